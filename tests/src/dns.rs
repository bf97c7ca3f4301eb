//! A real DNS server (dnsmasq, foreground, no upstream, no system files) on a free loopback port
//! answering from records the test gives, over UDP and TCP on the same port; plus a DNS query
//! builder and reply reader for tests that talk DNS from a raw socket.
//!
//! Which server answered is told by the records each one holds (give each server other addresses
//! for the same names, or a TXT record naming it) and by its query log ([`DnsServer::queries`]).

use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;

use tempfile::TempDir;

use crate::data::temp_dir;
use crate::net::{loopback, with_free_port};
use crate::paths::find_tool;
use crate::process::ChildGuard;
use crate::SERVER_START_TIMEOUT;

/// Query type A.
pub const QTYPE_A: u16 = 1;
/// Query type TXT.
pub const QTYPE_TXT: u16 = 16;

/// A running dnsmasq; killed on drop (by its pid, with its process tree).
pub struct DnsServer {
    // Dropped first: the process dies before its folder is removed.
    guard: ChildGuard,
    dir: TempDir,
    name: String,
    port: u16,
}

impl DnsServer {
    /// Start dnsmasq on `127.0.0.1:<free port>` (UDP and TCP), answering only from `records`:
    /// dnsmasq configuration lines such as `"host-record=www.a.example,10.1.1.1"`,
    /// `"txt-record=id.a.example,server-a"` or `"address=/a.example/10.0.0.1"`. Nothing else is
    /// read (no `/etc/hosts`, no `resolv.conf`, no upstream), and every query is logged.
    ///
    /// # Panics
    /// When dnsmasq is missing (Debian package `dnsmasq-base`) or does not come up.
    pub fn start(name: &str, records: &[&str]) -> DnsServer {
        let dnsmasq = find_tool("dnsmasq", "dnsmasq-base");
        let dir = temp_dir("dns");
        let d = dir.path();
        let mut conf = format!("# pmmux-e2e test DNS server {name}\n");
        for r in records {
            assert!(!r.contains('\n'), "one dnsmasq option per record: {r:?}");
            let _ = writeln!(conf, "{}", r.trim_start_matches("--"));
        }
        let conf_file = d.join("dnsmasq.conf");
        fs::write(&conf_file, conf).expect("write dnsmasq.conf");
        let (guard, port) = with_free_port("dnsmasq", |port| {
            let mut cmd = Command::new(&dnsmasq);
            cmd.arg("--keep-in-foreground")
                .arg(format!("--conf-file={}", conf_file.display()))
                .arg(format!("--port={port}"))
                .arg("--listen-address=127.0.0.1")
                .arg("--bind-interfaces")
                .arg("--no-resolv")
                .arg("--no-hosts")
                .arg("--no-poll")
                .arg("--user=root")
                .arg(format!("--pid-file={}", d.join("dnsmasq.pid").display()))
                .arg("--log-queries")
                .arg("--log-facility=-");
            let mut guard = ChildGuard::spawn_logged("dnsmasq", cmd, &d.join("dnsmasq.log"))
                .map_err(|e| format!("spawn {}: {e}", dnsmasq.display()))?;
            // dnsmasq binds UDP and TCP at start; a port another process holds makes it exit.
            guard.wait_udp_bound(loopback(port), SERVER_START_TIMEOUT)?;
            guard.wait_listening(loopback(port), SERVER_START_TIMEOUT)?;
            Ok((guard, port))
        });
        DnsServer {
            guard,
            dir,
            name: name.to_string(),
            port,
        }
    }

    /// The name given at start.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// dnsmasq's port on 127.0.0.1 (UDP and TCP).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        loopback(self.port)
    }

    /// dnsmasq's pid.
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Everything dnsmasq logged so far (start-up and one line per query).
    pub fn log(&self) -> String {
        self.guard.log()
    }

    /// How many queries for `qname` (any type, UDP or TCP) it received so far, from its query log
    /// (`query[A] www.a.example from 127.0.0.1`).
    pub fn queries(&self, qname: &str) -> usize {
        let needle = format!("] {qname} from ");
        self.log()
            .lines()
            .filter(|l| l.contains(": query[") && l.contains(&needle))
            .count()
    }

    /// Queries of any name received so far.
    pub fn total_queries(&self) -> usize {
        self.log().lines().filter(|l| l.contains(": query[")).count()
    }

    /// The temporary folder (config, log, pid file).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A DNS query message (RFC 1035): header with `id`, RD set, one question `name` / `qtype` / IN,
/// no EDNS. `name` is dotted, without the trailing dot.
///
/// # Panics
/// When a label is empty or longer than 63 bytes.
pub fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut m = Vec::with_capacity(18 + name.len());
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00]); // QR=0, opcode QUERY, RD=1
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QDCOUNT 1, AN/NS/AR 0
    for label in name.split('.') {
        assert!(
            !label.is_empty() && label.len() <= 63,
            "bad label {label:?} in {name:?}"
        );
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes()); // class IN
    m
}

/// One resource record of an answer section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsRecord {
    /// Type (1 = A, 16 = TXT, ...).
    pub rtype: u16,
    /// Raw RDATA.
    pub rdata: Vec<u8>,
}

/// The parts of a DNS response tests check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsReply {
    /// Message id (must equal the query's).
    pub id: u16,
    /// Response code (0 = NOERROR, 3 = NXDOMAIN, 5 = REFUSED).
    pub rcode: u8,
    /// The question's name, dotted, lowercase.
    pub qname: String,
    /// The answer section.
    pub answers: Vec<DnsRecord>,
}

impl DnsReply {
    /// The addresses of the A records among the answers.
    pub fn a_records(&self) -> Vec<Ipv4Addr> {
        self.answers
            .iter()
            .filter(|r| r.rtype == QTYPE_A && r.rdata.len() == 4)
            .map(|r| Ipv4Addr::new(r.rdata[0], r.rdata[1], r.rdata[2], r.rdata[3]))
            .collect()
    }

    /// The TXT records among the answers, each one's strings joined.
    pub fn txt_records(&self) -> Vec<String> {
        self.answers
            .iter()
            .filter(|r| r.rtype == QTYPE_TXT)
            .map(|r| {
                let mut text = String::new();
                let mut rest = r.rdata.as_slice();
                while let Some((&len, tail)) = rest.split_first() {
                    let len = usize::from(len).min(tail.len());
                    text.push_str(&String::from_utf8_lossy(&tail[..len]));
                    rest = &tail[len..];
                }
                text
            })
            .collect()
    }
}

/// Reads a DNS response: header, one question, the answer section (authority and additional
/// sections are ignored). Err when it is not a response or is malformed.
pub fn parse_dns_reply(msg: &[u8]) -> Result<DnsReply, String> {
    if msg.len() < 12 {
        return Err(format!("{} bytes: shorter than a DNS header", msg.len()));
    }
    let u16_at = |i: usize| -> Result<u16, String> {
        msg.get(i..i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| format!("truncated at byte {i}"))
    };
    if msg[2] & 0x80 == 0 {
        return Err("QR = 0: a query, not a response".into());
    }
    let id = u16_at(0)?;
    let rcode = msg[3] & 0x0f;
    let (qdcount, ancount) = (u16_at(4)?, u16_at(6)?);
    if qdcount != 1 {
        return Err(format!("QDCOUNT {qdcount}, expected 1"));
    }
    let (qname, mut at) = read_name(msg, 12)?;
    at += 4; // QTYPE, QCLASS
    let mut answers = Vec::new();
    for _ in 0..ancount {
        let (_, after_name) = read_name(msg, at)?;
        let rtype = u16_at(after_name)?;
        let rdlength = usize::from(u16_at(after_name + 8)?);
        let start = after_name + 10;
        let rdata = msg
            .get(start..start + rdlength)
            .ok_or_else(|| format!("RDATA of {rdlength} bytes at {start} runs past the end"))?
            .to_vec();
        answers.push(DnsRecord { rtype, rdata });
        at = start + rdlength;
    }
    Ok(DnsReply {
        id,
        rcode,
        qname,
        answers,
    })
}

/// Reads a (possibly compressed) name at `at`; returns it dotted and lowercase, and the offset
/// just after it in the message.
fn read_name(msg: &[u8], mut at: usize) -> Result<(String, usize), String> {
    let mut labels: Vec<String> = Vec::new();
    let mut end = None;
    for _ in 0..128 {
        let len = *msg.get(at).ok_or_else(|| format!("name runs past the end at {at}"))?;
        match len {
            0 => {
                return Ok((labels.join("."), end.unwrap_or(at + 1)));
            }
            l if l & 0xc0 == 0xc0 => {
                let low = *msg.get(at + 1).ok_or("truncated compression pointer")?;
                end.get_or_insert(at + 2);
                at = (usize::from(l & 0x3f) << 8) | usize::from(low);
            }
            l if l <= 63 => {
                let label = msg
                    .get(at + 1..at + 1 + usize::from(l))
                    .ok_or_else(|| format!("label at {at} runs past the end"))?;
                labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
                at += 1 + usize::from(l);
            }
            l => return Err(format!("bad label length byte {l:#04x} at {at}")),
        }
    }
    Err("name with more than 128 labels or a compression loop".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_reply_built_from_a_query() {
        let mut msg = dns_query(0xbeef, "www.A.example", QTYPE_A);
        assert_eq!(msg.len(), 12 + 15 + 4);
        msg[2] |= 0x80; // QR
        msg[7] = 2; // ANCOUNT
                    // A record, name compressed to the question's.
        msg.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 1, 1, 1]);
        // TXT "server-a"
        msg.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 60, 0, 9, 8]);
        msg.extend_from_slice(b"server-a");
        let reply = parse_dns_reply(&msg).expect("parse");
        assert_eq!(reply.id, 0xbeef);
        assert_eq!(reply.rcode, 0);
        assert_eq!(reply.qname, "www.a.example");
        assert_eq!(reply.a_records(), vec![Ipv4Addr::new(10, 1, 1, 1)]);
        assert_eq!(reply.txt_records(), vec!["server-a".to_string()]);
        assert!(
            parse_dns_reply(&dns_query(1, "x", QTYPE_A)).is_err(),
            "a query is no reply"
        );
    }
}
