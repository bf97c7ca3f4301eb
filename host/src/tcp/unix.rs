//! Unix-domain stream sockets: binding a `unix:` listener's socket file (a stale file nobody
//! listens on is replaced; a live socket or a file that is not a socket refuses the start), setting
//! its mode, owner and group before it accepts anything, removing it when the listener closes,
//! and connecting to a `unix:` backend target.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};
use tokio::net::UnixStream;

use crate::config::listen::UnixOptions;
use crate::tcp::relay::RelayError;

/// A listener's socket file, removed when the listener closes if it is still the one bound.
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    /// Device and inode of the file when it was bound (or adopted): another file put at the
    /// path since is not removed.
    id: Option<(u64, u64)>,
    /// Whether pmmux removes it (not when systemd made it: systemd removes its own).
    owned: bool,
}

impl SocketFile {
    /// The socket file at `path` as it is now; `owned`: pmmux removes it when the listener closes.
    pub(crate) fn at(path: &Path, owned: bool) -> SocketFile {
        let id = fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()));
        SocketFile {
            path: path.to_owned(),
            id,
            owned,
        }
    }

    /// Removes the file if pmmux owns it and it is still the one bound (logged either way).
    pub(crate) fn remove(&self) {
        let now = fs::symlink_metadata(&self.path).ok().map(|m| (m.dev(), m.ino()));
        if !self.owned || now.is_none() {
            return;
        }
        if now != self.id {
            return tracing::info!(path = %self.path.display(), "socket file was replaced by another; left in place");
        }
        match fs::remove_file(&self.path) {
            Ok(()) => tracing::info!(path = %self.path.display(), "socket file removed"),
            Err(e) => tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the socket file"),
        }
    }
}

/// Binds a listening Unix stream socket at `path` with `opts` applied. The file's mode, owner and
/// group are set between `bind` and `listen`, so nobody connects while it has the umask's mode.
pub(crate) fn bind(
    path: &Path,
    opts: &UnixOptions,
    backlog: i32,
) -> io::Result<(std::os::unix::net::UnixListener, SocketFile)> {
    clear_stale(path)?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.bind(&SockAddr::unix(path)?)?;
    let file = SocketFile::at(path, true);
    let ready = apply(path, opts).and_then(|()| {
        socket.listen(backlog)?;
        socket.set_nonblocking(true)
    });
    if let Err(e) = ready {
        file.remove();
        return Err(e);
    }
    Ok((socket.into(), file))
}

/// Sets the configured mode, owner and group on the socket file (again at a reload that changes them).
pub(crate) fn apply(path: &Path, opts: &UnixOptions) -> io::Result<()> {
    if let Some(mode) = opts.mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| io::Error::new(e.kind(), format!("cannot set mode {mode:04o} on the socket file: {e}")))?;
    }
    if opts.owner.is_some() || opts.group.is_some() {
        std::os::unix::fs::chown(path, opts.owner, opts.group).map_err(|e| {
            let show = |id: Option<u32>| id.map_or_else(|| "-".to_owned(), |i| i.to_string());
            io::Error::new(
                e.kind(),
                format!(
                    "cannot give the socket file owner {} group {}: {e}",
                    show(opts.owner),
                    show(opts.group)
                ),
            )
        })?;
    }
    Ok(())
}

/// Makes way for binding `path`: nothing there is fine; a socket nobody listens on (connecting is
/// refused: left by a process that is gone) is removed; a socket something listens on, or any
/// other file, is an error naming it.
pub(crate) fn clear_stale(path: &Path) -> io::Result<()> {
    let shown = path.display();
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io::Error::new(e.kind(), format!("cannot inspect {shown}: {e}"))),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{shown} exists and is not a socket; pmmux replaces only a stale socket file, so move it away or choose another path"),
        ));
    }
    // Non-blocking: a live listener with a full queue answers EAGAIN rather than blocking start-up.
    let probe = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    probe.set_nonblocking(true)?;
    match probe.connect(&SockAddr::unix(path)?) {
        Ok(()) => Err(live(path)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(live(path)),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused || e.kind() == io::ErrorKind::NotFound => {
            match fs::remove_file(path) {
                Ok(()) => {
                    tracing::info!(path = %shown, "removed a stale socket file nobody listened on");
                    Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io::Error::new(
                    e.kind(),
                    format!("cannot remove the stale socket file {shown}: {e}"),
                )),
            }
        }
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot tell whether a process listens on {shown}: {e}"),
        )),
    }
}

fn live(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::AddrInUse,
        format!(
            "a process is listening on {} already (a connection to it succeeded); stop it or choose another path",
            path.display()
        ),
    )
}

/// Connects to the Unix socket `path` of `target` within `connect_timeout`.
pub(crate) async fn connect(target: &str, path: &Path, connect_timeout: Duration) -> Result<UnixStream, RelayError> {
    match tokio::time::timeout(connect_timeout, UnixStream::connect(path)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(source)) => Err(RelayError::Connect {
            target: target.to_owned(),
            source,
        }),
        Err(_) => Err(RelayError::ConnectTimeout {
            target: target.to_owned(),
            ms: connect_timeout.as_millis(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn a_stale_socket_file_is_replaced_and_a_live_one_refused() {
        let d = dir();
        let path = d.path().join("s.sock");
        // Left behind: bound, then the listener dropped without removing the file.
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let (listener, file) = bind(&path, &UnixOptions::default(), 16).unwrap();
        std::os::unix::net::UnixStream::connect(&path).expect("the new socket accepts");
        let e = bind(&path, &UnixOptions::default(), 16).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        drop(listener);
        file.remove();
        assert!(!path.exists(), "removed on close");
    }

    #[test]
    fn a_file_that_is_not_a_socket_is_left_alone() {
        let d = dir();
        let path = d.path().join("data");
        fs::write(&path, b"keep me").unwrap();
        let e = bind(&path, &UnixOptions::default(), 16).unwrap_err();
        assert!(e.to_string().contains("is not a socket"), "{e}");
        assert_eq!(fs::read(&path).unwrap(), b"keep me");
    }

    #[test]
    fn mode_is_set_before_listening_and_a_replaced_file_is_not_removed() {
        let d = dir();
        let path = d.path().join("m.sock");
        let opts = UnixOptions {
            mode: Some(0o640),
            ..UnixOptions::default()
        };
        let (_listener, file) = bind(&path, &opts, 16).unwrap();
        let meta = fs::symlink_metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o640);
        // Someone else's file now sits at the path: closing leaves it.
        fs::remove_file(&path).unwrap();
        fs::write(&path, b"other").unwrap();
        file.remove();
        assert!(path.exists());
    }

    #[test]
    fn a_missing_folder_is_an_error() {
        let d = dir();
        let path = d.path().join("no/such/folder/s.sock");
        assert!(bind(&path, &UnixOptions::default(), 16).is_err());
    }
}
