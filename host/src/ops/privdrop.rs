//! Dropping root after start-up (`pmmux --user NAME [--group NAME]`): the user and group are looked
//! up before anything is bound (a typo fails at once), then, once every listener and the admin
//! socket are bound and the plugins are loaded, the folders pmmux must keep writing (the plugin
//! shadow folder) are handed to the user and the process switches with setgroups / setgid /
//! setuid, and checks that root cannot be regained.

use std::ffi::{CStr, CString};
use std::io;
use std::path::{Path, PathBuf};

/// Why the privilege drop failed.
#[derive(Debug, thiserror::Error)]
pub enum PrivError {
    /// `--user` needs pmmux to start as root.
    #[error("--user {user}: pmmux runs as uid {uid}, not root; start it as root (or leave --user out)")]
    NotRoot {
        /// The user asked for.
        user: String,
        /// Our effective uid.
        uid: u32,
    },
    /// No such user.
    #[error("--user {0}: no such user")]
    NoUser(String),
    /// No such group.
    #[error("--group {0}: no such group")]
    NoGroup(String),
    /// Handing a folder to the user failed.
    #[error("cannot hand {path} to uid {uid}: {error}")]
    Chown {
        /// The folder.
        path: PathBuf,
        /// The user.
        uid: u32,
        /// Why (in the message, not a `source`: printed with `{:#}` it would appear twice).
        error: io::Error,
    },
    /// A system call of the switch failed.
    #[error("cannot switch to {what}: {error}")]
    Switch {
        /// Which step.
        what: String,
        /// Why (in the message, not a `source`: printed with `{:#}` it would appear twice).
        error: io::Error,
    },
    /// After the switch, root could be regained: refuse to run like that.
    #[error("after switching to uid {0}, setuid(0) still succeeds; refusing to run")]
    Regained(u32),
}

/// The user and group to run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// User name as given.
    pub user: String,
    /// Its uid.
    pub uid: u32,
    /// The group's gid (the user's primary group unless `--group` named one).
    pub gid: u32,
}

/// Looks up `user` (a name or a numeric uid) and `group` (default: the user's primary group), and
/// checks that pmmux runs as root.
pub fn resolve(user: &str, group: Option<&str>) -> Result<RunAs, PrivError> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(PrivError::NotRoot {
            user: user.to_owned(),
            uid: euid,
        });
    }
    let (uid, primary) = lookup_user(user).ok_or_else(|| PrivError::NoUser(user.to_owned()))?;
    let gid = match group {
        Some(g) => lookup_group(g).ok_or_else(|| PrivError::NoGroup(g.to_owned()))?,
        None => primary,
    };
    Ok(RunAs {
        user: user.to_owned(),
        uid,
        gid,
    })
}

/// Hands `writable` folders to the user, then switches to it for good.
pub fn drop_to(run_as: &RunAs, writable: &[&Path]) -> Result<(), PrivError> {
    for path in writable {
        std::os::unix::fs::chown(path, Some(run_as.uid), Some(run_as.gid)).map_err(|error| PrivError::Chown {
            path: path.to_path_buf(),
            uid: run_as.uid,
            error,
        })?;
    }
    let step = |what: String, rc: libc::c_int| {
        if rc == 0 {
            Ok(())
        } else {
            Err(PrivError::Switch {
                what,
                error: io::Error::last_os_error(),
            })
        }
    };
    let gid = run_as.gid as libc::gid_t;
    // SAFETY: plain system calls on integers; glibc applies set*id to every thread of the process.
    unsafe {
        step(format!("supplementary groups [{gid}]"), libc::setgroups(1, &gid))?;
        step(format!("gid {gid}"), libc::setgid(gid))?;
        step(
            format!("uid {} ({})", run_as.uid, run_as.user),
            libc::setuid(run_as.uid),
        )?;
        if run_as.uid != 0 && libc::setuid(0) == 0 {
            return Err(PrivError::Regained(run_as.uid));
        }
    }
    tracing::info!(user = %run_as.user, uid = run_as.uid, gid = run_as.gid, "dropped root privileges");
    Ok(())
}

/// A user's uid and primary gid, by name or number.
pub(crate) fn lookup_user(user: &str) -> Option<(u32, u32)> {
    let name = CString::new(user).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid value for getpwnam_r to fill in.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and buf.len() is its size.
    let rc = unsafe { libc::getpwnam_r(name.as_ptr(), &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc == 0 && !result.is_null() {
        return Some((pwd.pw_uid, pwd.pw_gid));
    }
    // A numeric uid need not be in the password database; its group is then the same number.
    let uid: u32 = user.parse().ok()?;
    // SAFETY: as above, for getpwuid_r.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    Some(if rc == 0 && !result.is_null() {
        (uid, pwd.pw_gid)
    } else {
        (uid, uid)
    })
}

/// A group's gid, by name or number.
pub(crate) fn lookup_group(group: &str) -> Option<u32> {
    let name = CString::new(group).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: an all-zero group is a valid value for getgrnam_r to fill in.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and buf.len() is its size.
    let rc = unsafe { libc::getgrnam_r(name.as_ptr(), &mut grp, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc == 0 && !result.is_null() {
        return Some(grp.gr_gid);
    }
    group.parse().ok()
}

/// The name of `uid` in the password database, for messages.
pub fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: as in lookup_user.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and buf.len() is its size.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: pw_name points into buf, NUL-terminated, while buf lives.
    Some(unsafe { CStr::from_ptr(pwd.pw_name) }.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_up_users_and_groups() {
        assert_eq!(lookup_user("root"), Some((0, 0)));
        assert_eq!(user_name(0).as_deref(), Some("root"));
        assert_eq!(lookup_group("root"), Some(0));
        assert_eq!(lookup_user("no-such-user-pmmux"), None);
        assert_eq!(lookup_group("no-such-group-pmmux"), None);
        assert_eq!(lookup_group("4242"), Some(4242));
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            assert!(matches!(resolve("no-such-user-pmmux", None), Err(PrivError::NoUser(_))));
            let nobody = resolve("nobody", None).unwrap();
            assert_eq!(nobody.uid, 65534);
        } else {
            assert!(matches!(resolve("nobody", None), Err(PrivError::NotRoot { .. })));
        }
    }
}
