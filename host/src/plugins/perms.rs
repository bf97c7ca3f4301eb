//! Who may put code into pmmux: the plugin folder and each plugin file must be owned by root or by
//! the user pmmux runs as (its effective uid), and writable by no one else (no other-write bit; a
//! group-write bit only when the group is the owner's own *private group*, see below). Anyone who
//! can write there can make pmmux run their code; such a folder loads nothing and such a file is
//! not loaded, each with one line saying what is wrong and the command that fixes it. A file
//! reached through a symlink is checked where the link points. ACLs are not read.
//!
//! Private groups: Debian, Ubuntu and Fedora give each user a group of their own and a umask of
//! 002, so everything a user creates (a `mkdir`, a `cp`, cargo's output) is group-writable by a
//! group whose only member is that user. Such a bit lets no one else write, so it is accepted, as
//! Debian's OpenSSH accepts it for `~/.ssh`: the group must exist and its members (by primary
//! group in the password database, and listed in the group database) must be exactly the owner.

use std::ffi::CStr;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

/// Checks the plugin folder. A folder that does not exist holds no plugins and passes.
pub(crate) fn check_dir(dir: &Path) -> Result<(), String> {
    match fs::metadata(dir) {
        Ok(meta) => check(dir, "plugin folder", &meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot read the plugin folder: {e}")),
    }
}

/// Checks one plugin file.
pub(crate) fn check_file(file: &Path) -> Result<(), String> {
    let meta = fs::metadata(file).map_err(|e| format!("cannot read the file: {e}"))?;
    check(file, "plugin file", &meta)
}

fn check(path: &Path, what: &str, meta: &fs::Metadata) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let owner = Owner {
        uid: meta.uid(),
        gid: meta.gid(),
    };
    verdict(path, what, owner, meta.mode(), euid, &private_group)
}

/// The owner and group of a file.
#[derive(Debug, Clone, Copy)]
struct Owner {
    uid: u32,
    gid: u32,
}

fn verdict(
    path: &Path,
    what: &str,
    owner: Owner,
    mode: u32,
    euid: u32,
    is_private: &dyn Fn(u32, u32) -> bool,
) -> Result<(), String> {
    let p = path.display();
    let perm = mode & 0o7777;
    let other_w = mode & 0o002 != 0;
    // Asked only when the bit is set: it reads the user and group databases.
    let group_w = mode & 0o020 != 0 && !is_private(owner.gid, owner.uid);
    if other_w || group_w {
        let (who, fix) = match (group_w, other_w) {
            (true, true) => ("group- and world-writable", "go-w"),
            (false, true) => ("world-writable", "o-w"),
            _ => ("group-writable", "g-w"),
        };
        let anyone = if other_w {
            "anyone"
        } else {
            "any member of its group (not a private group of the owner alone)"
        };
        return Err(format!(
            "{what} {p} is {who} (mode {perm:04o}): {anyone} could make pmmux run their code; fix with chmod {fix} {p}"
        ));
    }
    if owner.uid != 0 && owner.uid != euid {
        let name = |uid: u32| {
            crate::ops::privdrop::user_name(uid).map_or_else(|| format!("uid {uid}"), |n| format!("{n} (uid {uid})"))
        };
        return Err(format!(
            "{what} {p} is owned by {}, neither root nor {}, the user pmmux runs as: that user could make pmmux \
             run their code; fix with chown root {p}",
            name(owner.uid),
            name(euid)
        ));
    }
    Ok(())
}

/// Whether group `gid` exists and its only member is user `uid` (see the module documentation).
fn private_group(gid: u32, uid: u32) -> bool {
    let Some(owner) = crate::ops::privdrop::user_name(uid) else {
        return false;
    };
    let Some(listed) = group_members(gid) else {
        return false;
    };
    if listed.iter().any(|m| *m != owner) {
        return false;
    }
    match primary_members(gid) {
        Some(primary) => primary.iter().all(|&u| u == uid) && (!primary.is_empty() || !listed.is_empty()),
        None => false,
    }
}

/// The user names the group database lists for `gid`; `None` when there is no such group.
fn group_members(gid: u32) -> Option<Vec<String>> {
    let mut buf = vec![0 as libc::c_char; 64 * 1024];
    // SAFETY: an all-zero group is a valid value for getgrgid_r to fill in.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and buf.len() is its size.
    let rc = unsafe { libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return None;
    }
    let mut members = Vec::new();
    let mut at = grp.gr_mem;
    // SAFETY: gr_mem is a NULL-terminated array of NUL-terminated strings inside buf.
    unsafe {
        while !at.is_null() && !(*at).is_null() {
            members.push(CStr::from_ptr(*at).to_string_lossy().into_owned());
            at = at.add(1);
        }
    }
    Some(members)
}

/// The uids whose primary group is `gid`, by walking the password database; `None` when the walk
/// cannot be done.
fn primary_members(gid: u32) -> Option<Vec<u32>> {
    // getpwent keeps one cursor per process: walks are serialized.
    static WALK: Mutex<()> = Mutex::new(());
    let _walk = WALK.lock().ok()?;
    let mut uids = Vec::new();
    // SAFETY: setpwent/getpwent/endpwent are called under WALK; each entry is read before the
    // next call overwrites it.
    unsafe {
        libc::setpwent();
        loop {
            let entry = libc::getpwent();
            if entry.is_null() {
                break;
            }
            if (*entry).pw_gid == gid {
                uids.push((*entry).pw_uid);
            }
        }
        libc::endpwent();
    }
    Some(uids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn own(uid: u32) -> Owner {
        Owner { uid, gid: 100 }
    }

    fn shared(_gid: u32, _uid: u32) -> bool {
        false
    }

    #[test]
    fn verdicts() {
        let p = Path::new("/x");
        let verdict =
            |p: &Path, what: &str, uid: u32, mode: u32, euid: u32| verdict(p, what, own(uid), mode, euid, &shared);
        assert_eq!(verdict(p, "plugin folder", 0, 0o40755, 1000), Ok(()));
        assert_eq!(verdict(p, "plugin folder", 1000, 0o40700, 1000), Ok(()));
        assert_eq!(
            verdict(p, "plugin folder", 0, 0o40777, 0).unwrap_err(),
            "plugin folder /x is group- and world-writable (mode 0777): anyone could make pmmux run their code; \
             fix with chmod go-w /x"
        );
        assert_eq!(
            verdict(p, "plugin folder", 0, 0o41757, 0).unwrap_err(),
            "plugin folder /x is world-writable (mode 1757): anyone could make pmmux run their code; fix with chmod o-w /x"
        );
        let e = verdict(p, "plugin file", 0, 0o100664, 0).unwrap_err();
        assert!(
            e.starts_with("plugin file /x is group-writable (mode 0664): any member of its group"),
            "{e}"
        );
        assert!(e.ends_with("fix with chmod g-w /x"), "{e}");
        let e = verdict(p, "plugin file", 4242, 0o100644, 0).unwrap_err();
        assert!(e.contains("owned by uid 4242, neither root nor root (uid 0)"), "{e}");
        assert!(e.ends_with("fix with chown root /x"), "{e}");
    }

    #[test]
    fn a_group_bit_for_the_owners_private_group_is_accepted() {
        let p = Path::new("/x");
        let private = |gid: u32, uid: u32| gid == 1000 && uid == 1000;
        let mine = Owner { uid: 1000, gid: 1000 };
        assert_eq!(verdict(p, "plugin folder", mine, 0o40775, 1000, &private), Ok(()));
        // The other-write bit is never accepted, and another group's bit is not.
        assert!(verdict(p, "plugin folder", mine, 0o40777, 1000, &private).is_err());
        let users = Owner { uid: 1000, gid: 100 };
        let e = verdict(p, "plugin folder", users, 0o40775, 1000, &private).unwrap_err();
        assert!(
            e.contains("group-writable (mode 0775)") && e.contains("not a private group"),
            "{e}"
        );
    }

    #[test]
    fn private_groups_from_the_real_databases() {
        // root's group lists no one else in this environment's databases (as on Debian); a group
        // that does not exist is never private.
        let root_alone = group_members(0).is_some_and(|m| m.iter().all(|n| n == "root"))
            && primary_members(0).is_some_and(|u| u.iter().all(|&u| u == 0));
        assert_eq!(private_group(0, 0), root_alone);
        assert!(!private_group(4_000_000_000, 0));
        assert!(!private_group(0, 4_000_000_000), "an owner without a name");
    }

    #[test]
    fn checks_real_modes() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(check_dir(dir.path()), Ok(()));
        assert_eq!(check_dir(&dir.path().join("missing")), Ok(()));
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        assert!(check_dir(dir.path())
            .unwrap_err()
            .contains("world-writable (mode 0777)"));
        let file = dir.path().join("libx.so");
        fs::write(&file, b"x").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o646)).unwrap();
        assert!(check_file(&file).unwrap_err().contains("world-writable (mode 0646)"));
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(check_file(&file), Ok(()));
    }
}
