//! A network namespace a test creates for itself (its own loopback, so a fixed port such as the
//! default configuration's 127.0.0.1:8443 is free whatever else runs on the machine) and deletes
//! when dropped.

use std::process::Command;
use std::time::Duration;

use crate::process::run;

const IP_TIMEOUT: Duration = Duration::from_secs(10);

/// A namespace with its loopback up, deleted on drop.
pub struct LoopbackNs {
    name: String,
}

impl LoopbackNs {
    /// Creates `pmmux-<what>-<pid>` with `lo` up; `None` when namespaces are not available here
    /// (not root, no `ip`, no kernel support).
    pub fn create(what: &str) -> Option<LoopbackNs> {
        let name = format!("pmmux-{what}-{}", std::process::id());
        let _ = run("ip", &["netns", "del", &name], IP_TIMEOUT);
        let ns = LoopbackNs { name };
        let made = run("ip", &["netns", "add", &ns.name], IP_TIMEOUT).status.success()
            && run("ip", &["-n", &ns.name, "link", "set", "lo", "up"], IP_TIMEOUT)
                .status
                .success();
        made.then_some(ns)
    }

    /// `program args`, to be run inside the namespace (`ip netns exec` execs the program, so its
    /// process id is the program's).
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]).args(args);
        c
    }
}

impl Drop for LoopbackNs {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name], IP_TIMEOUT);
    }
}
