//! A real OpenSSH server (`sshd -D -e`) on a free loopback port, with its own host key and a client key allowed to log in.

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use tempfile::TempDir;

use crate::data::temp_dir;
use crate::net::{loopback, with_free_port};
use crate::paths::find_tool;
use crate::process::{run, ChildGuard, OutputExt};
use crate::{SERVER_START_TIMEOUT, TOOL_TIMEOUT};

/// The name the host key is filed under in [`Sshd::known_hosts`]; `ssh -o HostKeyAlias=` this
/// name checks the key whatever address and port (pmmux's or sshd's own) the client dialled.
pub const HOST_KEY_ALIAS: &str = "pmmux-e2e-sshd";

/// A running `sshd`; killed (with its per-connection processes) on drop.
///
/// Needs root, as sshd does for logins; the user that may log in (with [`Sshd::client_key`]) is
/// the one running the tests.
pub struct Sshd {
    // Dropped first: the process dies before its folder is removed.
    guard: ChildGuard,
    dir: TempDir,
    port: u16,
    host_public_key: String,
    user: String,
}

/// sshd refuses to start without its privilege-separation folder.
fn ensure_privsep_dir() {
    let dir = Path::new("/run/sshd");
    if !dir.is_dir() && fs::create_dir_all(dir).is_ok() {
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
    }
}

fn keygen(path: &Path, comment: &str) {
    let keygen = find_tool("ssh-keygen", "openssh-client");
    let path_arg = path.to_string_lossy();
    run(
        &keygen.to_string_lossy(),
        &["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", &path_arg],
        TOOL_TIMEOUT,
    )
    .expect_success("ssh-keygen");
}

/// `"<type> <base64>"` of a `.pub` file, without its comment.
fn public_key_of(pub_file: &Path) -> String {
    let text = fs::read_to_string(pub_file).unwrap_or_else(|e| panic!("read {}: {e}", pub_file.display()));
    text.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

fn current_user() -> String {
    run("id", &["-un"], TOOL_TIMEOUT)
        .expect_success("id -un")
        .trim()
        .to_string()
}

fn sshd_config(dir: &Path, port: u16, user: &str, penalties_option: bool) -> String {
    let d = dir.display();
    let mut config = format!(
        "ListenAddress 127.0.0.1\n\
         Port {port}\n\
         HostKey {d}/ssh_host_ed25519_key\n\
         PidFile {d}/sshd.pid\n\
         UsePAM no\n\
         StrictModes no\n\
         AuthorizedKeysFile {d}/authorized_keys\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PermitRootLogin prohibit-password\n\
         AllowUsers {user}\n\
         UseDNS no\n\
         PrintMotd no\n\
         PrintLastLog no\n\
         X11Forwarding no\n\
         LoginGraceTime 30\n\
         MaxStartups 200:30:400\n\
         Subsystem sftp internal-sftp\n\
         LogLevel VERBOSE\n"
    );
    if penalties_option {
        // OpenSSH >= 9.8 penalises addresses whose connections fail; every test connects from
        // 127.0.0.1 and some deliberately break connections, so switch it off.
        config.push_str("PerSourcePenalties no\n");
    }
    config
}

/// Whether this sshd knows `PerSourcePenalties` (asked once, with `sshd -t`).
fn supports_penalties(sshd: &Path, dir: &Path, user: &str) -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        let probe = dir.join("sshd_config.probe");
        fs::write(&probe, sshd_config(dir, 22, user, true)).expect("write sshd probe config");
        let out = run(
            &sshd.to_string_lossy(),
            &["-t", "-f", &probe.to_string_lossy()],
            TOOL_TIMEOUT,
        );
        let _ = fs::remove_file(&probe);
        out.status.success() || !out.stderr_str().contains("PerSourcePenalties")
    })
}

impl Sshd {
    /// Generate keys, write the config, start sshd and wait until it listens.
    ///
    /// # Panics
    /// When sshd is not installed or does not come up (after retrying on other ports).
    pub fn start() -> Sshd {
        let sshd = find_tool("sshd", "openssh-server");
        ensure_privsep_dir();
        let dir = temp_dir("sshd");
        let d = dir.path();
        keygen(&d.join("ssh_host_ed25519_key"), "pmmux-e2e-host");
        keygen(&d.join("client_ed25519"), "pmmux-e2e-client");
        fs::copy(d.join("client_ed25519.pub"), d.join("authorized_keys")).expect("write authorized_keys");
        let host_public_key = public_key_of(&d.join("ssh_host_ed25519_key.pub"));
        fs::write(d.join("known_hosts"), format!("{HOST_KEY_ALIAS} {host_public_key}\n")).expect("write known_hosts");
        let user = current_user();
        let penalties = supports_penalties(&sshd, d, &user);
        let config = d.join("sshd_config");
        let (guard, port) = with_free_port("sshd", |port| {
            fs::write(&config, sshd_config(d, port, &user, penalties)).map_err(|e| e.to_string())?;
            let mut cmd = Command::new(&sshd);
            cmd.arg("-D").arg("-e").arg("-f").arg(&config);
            let mut guard = ChildGuard::spawn_logged("sshd", cmd, &d.join("sshd.log"))
                .map_err(|e| format!("spawn {}: {e}", sshd.display()))?;
            guard.wait_listening(loopback(port), SERVER_START_TIMEOUT)?;
            Ok((guard, port))
        });
        Sshd {
            guard,
            dir,
            port,
            host_public_key,
            user,
        }
    }

    /// sshd's own port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        loopback(self.port)
    }

    /// The host key, `"ssh-ed25519 AAAA..."` (no comment), as `ssh-keyscan` prints it.
    pub fn host_public_key(&self) -> &str {
        &self.host_public_key
    }

    /// Whether `ssh-keyscan` output (lines `host keytype base64`) contains this host key.
    pub fn host_key_matches(&self, keyscan_output: &str) -> bool {
        keyscan_output.lines().filter(|l| !l.starts_with('#')).any(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            fields.len() >= 3 && fields[1..3].join(" ") == self.host_public_key
        })
    }

    /// The private key that may log in as [`Sshd::user`].
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_ed25519")
    }

    /// A known_hosts file holding the host key under [`HOST_KEY_ALIAS`].
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// The user allowed to log in (the one running the tests).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Arguments for `ssh` to log in to this sshd through `127.0.0.1:port` (sshd's own port or a
    /// multiplexer's), non-interactively, with the host key checked strictly; append the remote
    /// command, e.g. `run("ssh", &[sshd.ssh_args(port), vec!["echo".into(), "hi".into()]].concat(), t)`.
    pub fn ssh_args(&self, port: u16) -> Vec<String> {
        vec![
            "-F".into(),
            "/dev/null".into(),
            "-i".into(),
            self.client_key().to_string_lossy().into_owned(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts().display()),
            "-o".into(),
            format!("HostKeyAlias={HOST_KEY_ALIAS}"),
            "-o".into(),
            "ConnectTimeout=10".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
            "-p".into(),
            port.to_string(),
            format!("{}@127.0.0.1", self.user),
        ]
    }

    /// sshd's stderr log so far.
    pub fn log(&self) -> String {
        self.guard.log()
    }

    /// sshd's pid.
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// The temporary folder (config, keys, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
