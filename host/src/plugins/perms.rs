//! Who may put code into pmmux: the plugin folder and each plugin file must be owned by root or by
//! the user pmmux runs as (its effective uid), and writable by no one else (no group or other write
//! bit). Anyone who can write there can make pmmux run their code; such a folder loads nothing and
//! such a file is not loaded, each with one line saying what is wrong and the command that fixes
//! it. A file reached through a symlink is checked where the link points. ACLs are not read.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Checks the plugin folder. A folder that does not exist holds no plugins and passes.
pub(crate) fn check_dir(dir: &Path) -> Result<(), String> {
    match fs::metadata(dir) {
        Ok(meta) => check(dir, "plugin folder", meta.uid(), meta.mode()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot read the plugin folder: {e}")),
    }
}

/// Checks one plugin file.
pub(crate) fn check_file(file: &Path) -> Result<(), String> {
    let meta = fs::metadata(file).map_err(|e| format!("cannot read the file: {e}"))?;
    check(file, "plugin file", meta.uid(), meta.mode())
}

fn check(path: &Path, what: &str, owner: u32, mode: u32) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    verdict(path, what, owner, mode, euid)
}

fn verdict(path: &Path, what: &str, owner: u32, mode: u32, euid: u32) -> Result<(), String> {
    let p = path.display();
    let perm = mode & 0o7777;
    let (group_w, other_w) = (mode & 0o020 != 0, mode & 0o002 != 0);
    if other_w || group_w {
        let (who, fix) = match (group_w, other_w) {
            (true, true) => ("group- and world-writable", "go-w"),
            (false, true) => ("world-writable", "o-w"),
            _ => ("group-writable", "g-w"),
        };
        let anyone = if other_w { "anyone" } else { "any member of its group" };
        return Err(format!(
            "{what} {p} is {who} (mode {perm:04o}): {anyone} could make pmmux run their code; fix with chmod {fix} {p}"
        ));
    }
    if owner != 0 && owner != euid {
        let name = |uid: u32| {
            crate::ops::privdrop::user_name(uid).map_or_else(|| format!("uid {uid}"), |n| format!("{n} (uid {uid})"))
        };
        return Err(format!(
            "{what} {p} is owned by {}, neither root nor {}, the user pmmux runs as: that user could make pmmux \
             run their code; fix with chown root {p}",
            name(owner),
            name(euid)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn verdicts() {
        let p = Path::new("/x");
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
