//! Where the workspace, its debug build output and the external tools the harness runs are.

use std::env;
use std::path::{Path, PathBuf};

/// The workspace root (the folder holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("pmmux-e2e lives one level below the workspace root")
        .to_path_buf()
}

/// Cargo's target directory.
///
/// `CARGO_TARGET_DIR` wins when set (a relative value is taken relative to the workspace root);
/// otherwise the directory the running test binary was built into (`<target>/<profile>/deps/..`);
/// otherwise `<root>/target`.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() {
            dir
        } else {
            workspace_root().join(dir)
        };
    }
    if let Ok(exe) = env::current_exe() {
        let deps = exe.parent();
        if deps.and_then(Path::file_name).is_some_and(|n| n == "deps") {
            if let Some(target) = deps.and_then(Path::parent).and_then(Path::parent) {
                return target.to_path_buf();
            }
        }
    }
    workspace_root().join("target")
}

/// The debug profile's output folder, `<target>/debug`, where `pmmux` and the plugins are built.
pub fn debug_dir() -> PathBuf {
    target_dir().join("debug")
}

/// A file in `<target>/debug`, e.g. `artifact("pmmux")` or `artifact("libpmmux_ssh.so")`.
///
/// # Panics
/// When the file does not exist, with a message saying to build the workspace first.
pub fn artifact(file_name: &str) -> PathBuf {
    let path = debug_dir().join(file_name);
    if !path.is_file() {
        panic!(
            "{} not found: run `cargo build --workspace` first \
             (the end-to-end tests run the debug build of the host and plugins)",
            path.display()
        );
    }
    path
}

/// The host binary, `<target>/debug/pmmux`.
pub fn pmmux_bin() -> PathBuf {
    artifact("pmmux")
}

/// The library file name of a plugin.
///
/// Accepts the short name (`"ssh"`, `"http_response"`), the crate's library name (`"pmmux_ssh"`)
/// or the file name itself (`"libpmmux_ssh.so"`); all give `libpmmux_ssh.so`.
pub fn plugin_file_name(name: &str) -> String {
    if name.starts_with("lib") && name.ends_with(".so") {
        name.to_string()
    } else if let Some(stem) = name.strip_prefix("pmmux_") {
        format!("libpmmux_{stem}.so")
    } else {
        format!("libpmmux_{name}.so")
    }
}

/// A built plugin library, `<target>/debug/libpmmux_<name>.so` (see [`plugin_file_name`]).
///
/// # Panics
/// When it has not been built.
pub fn plugin_lib(name: &str) -> PathBuf {
    artifact(&plugin_file_name(name))
}

/// An external program by name, searched in `PATH` and the sbin folders (which a non-login
/// root shell may lack in `PATH`).
///
/// # Panics
/// When it is not installed, naming the Debian package that provides it.
pub fn find_tool(name: &str, debian_package: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = env::var_os("PATH")
        .map(|p| env::split_paths(&p).collect())
        .unwrap_or_default();
    for extra in ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        dirs.push(PathBuf::from(extra));
    }
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` not found in PATH or /usr/sbin: install it with \
                 `apt-get install {debian_package}`"
            )
        })
}

/// `systemd-socket-activate --listen=…` for each of `listens`, running the built `pmmux --config
/// CONFIG --log-level debug` in `dir` on the first connection, its output logged to
/// `dir/pmmux.log`.
pub fn socket_activated(listens: &[String], config: &Path, dir: &Path) -> crate::process::ChildGuard {
    let mut cmd = std::process::Command::new(find_tool("systemd-socket-activate", "systemd"));
    cmd.args(listens.iter().map(|l| format!("--listen={l}")))
        .arg(pmmux_bin())
        .args(["--config", &config.to_string_lossy(), "--log-level", "debug"])
        .current_dir(dir);
    crate::process::ChildGuard::spawn_logged("systemd-socket-activate", cmd, &dir.join("pmmux.log"))
        .expect("start systemd-socket-activate")
}
