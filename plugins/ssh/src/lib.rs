//! pmmux plugin `ssh`: matches a client whose first bytes are the SSH identification string
//! (`SSH-2.0-...`, RFC 4253 §4.2). Takes no params. Property `ssh.banner`: the client's banner line.
//! Health check: connect and send nothing; healthy when the server's first bytes are `SSH-`.

use pmmux_plugin_api::{
    export_plugin, Backend, BackendSpec, ConnInfo, Detection, HealthProbe, HealthTransport, HealthVerdict, Property,
};

const MAGIC: &[u8] = b"SSH-";
/// RFC 4253 caps the identification line at 255 bytes including CR LF.
const MAX_BANNER: usize = 255;

/// An `ssh` backend.
pub struct Ssh;

impl Ssh {
    /// Builds the backend; `ssh` has no params, so any given are an error.
    pub fn new(spec: &BackendSpec<'_>) -> Result<Self, String> {
        spec.no_params()?;
        Ok(Ssh)
    }
}

/// The detection itself, over the bytes seen so far.
pub fn detect(preview: &[u8]) -> Detection {
    let n = preview.len().min(MAGIC.len());
    if preview[..n] != MAGIC[..n] {
        return Detection::NoMatch;
    }
    if n < MAGIC.len() {
        return Detection::NeedMore;
    }
    let line_end = preview.iter().take(MAX_BANNER).position(|&b| b == b'\n');
    let banner = match line_end {
        Some(end) => &preview[..end],
        // Banner line still arriving: the magic is enough to decide, report what we have.
        None => &preview[..preview.len().min(MAX_BANNER)],
    };
    let banner = String::from_utf8_lossy(banner).trim_end_matches('\r').to_owned();
    Detection::Match(vec![Property::new("ssh.banner", banner)])
}

impl Backend for Ssh {
    fn detect(&self, _conn: &ConnInfo<'_>, preview: &[u8]) -> Detection {
        detect(preview)
    }

    fn health_probe(&self) -> Option<HealthProbe> {
        // The server speaks first: nothing to send.
        Some(HealthProbe {
            transport: HealthTransport::Tcp,
            send: Vec::new(),
        })
    }

    fn health_verdict(&self, response: &[u8], closed: bool) -> HealthVerdict {
        health_verdict(response, closed)
    }
}

/// Judges a server's first bytes: healthy on the `SSH-` magic.
pub fn health_verdict(response: &[u8], closed: bool) -> HealthVerdict {
    let n = response.len().min(MAGIC.len());
    if response[..n] != MAGIC[..n] {
        let shown = String::from_utf8_lossy(&response[..response.len().min(32)]).into_owned();
        return HealthVerdict::Unhealthy(format!("no SSH banner; the server sent `{}`", shown.escape_debug()));
    }
    match (n == MAGIC.len(), closed) {
        (true, _) => HealthVerdict::Healthy,
        (false, false) => HealthVerdict::NeedMore,
        (false, true) => HealthVerdict::Unhealthy("closed before sending an SSH banner".into()),
    }
}

export_plugin! {
    name: "ssh",
    version: env!("CARGO_PKG_VERSION"),
    protocols: { "ssh" => Ssh::new },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sent by OpenSSH 9.2 (Debian 12) as its first segment.
    const OPENSSH: &[u8] = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n";

    #[test]
    fn openssh_banner_matches_with_property() {
        match detect(OPENSSH) {
            Detection::Match(props) => {
                assert_eq!(props[0].key.as_str(), "ssh.banner");
                assert_eq!(props[0].value.as_str(), "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3");
            }
            other => panic!("expected match, got {other:?}"),
        }
    }

    #[test]
    fn every_prefix_of_the_magic_needs_more() {
        for n in 0..MAGIC.len() {
            assert_eq!(detect(&OPENSSH[..n]), Detection::NeedMore, "prefix {n}");
        }
    }

    #[test]
    fn health_verdict_wants_the_server_banner() {
        assert_eq!(health_verdict(OPENSSH, false), HealthVerdict::Healthy);
        assert_eq!(health_verdict(b"SS", false), HealthVerdict::NeedMore);
        assert!(matches!(health_verdict(b"SS", true), HealthVerdict::Unhealthy(_)));
        assert!(matches!(health_verdict(b"", true), HealthVerdict::Unhealthy(_)));
        assert!(matches!(
            health_verdict(b"HTTP/1.1 400 Bad Request\r\n", false),
            HealthVerdict::Unhealthy(_)
        ));
        assert_eq!(Ssh.health_probe().map(|p| p.send.len()), Some(0));
    }

    #[test]
    fn other_protocols_do_not_match() {
        assert_eq!(detect(b"GET / HTTP/1.1\r\n"), Detection::NoMatch);
        assert_eq!(detect(&[0x16, 0x03, 0x01, 0x00]), Detection::NoMatch);
        assert_eq!(detect(b"SSX-2.0"), Detection::NoMatch);
    }
}
