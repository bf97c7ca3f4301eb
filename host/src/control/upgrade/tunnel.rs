//! The UDP flow tunnel: one `SOCK_SEQPACKET` pair per UDP listener between the old and the new
//! process during an upgrade. Both processes hold the same listening socket, but only the new one
//! reads it once it has taken over; datagrams from clients whose flow lives in the old process are
//! passed back to it through the tunnel, and the old process sends its replies straight from its
//! copy of the listening socket (same address, so the client sees nothing change).
//!
//! Messages (one per packet, addresses as family byte 4|6, address bytes, port big-endian):
//! - old → new `O` + addresses: clients whose flows (or undecided detections) the old process keeps;
//! - old → new `S`: that list is complete; the new process may read the listening socket;
//! - new → old `D` + address + payload: a datagram from one of those clients;
//! - old → new `B` + address + payload: the old process no longer has a flow for that client (it
//!   went idle): the new process forgets the client and handles the datagram as a new client's.
//!
//! When the old process exits, the tunnel closes and the new process forgets every old client.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Most addresses in one `O` packet (19 bytes each at most: well inside a socket buffer).
const OWNED_PER_PACKET: usize = 1024;

/// One tunnel message.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// Clients the old process keeps.
    Owned(Vec<SocketAddr>),
    /// The owned list is complete.
    Sync,
    /// A client's datagram for the old process.
    Data(SocketAddr, &'a [u8]),
    /// A datagram the old process gives back: it has no flow for the client.
    Bounce(SocketAddr, &'a [u8]),
}

fn put_addr(out: &mut Vec<u8>, a: SocketAddr) {
    match a.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&a.port().to_be_bytes());
}

fn get_addr(b: &[u8]) -> Option<(SocketAddr, &[u8])> {
    let (&family, rest) = b.split_first()?;
    let (ip, rest): (IpAddr, &[u8]) = match family {
        4 if rest.len() >= 4 => {
            let o: [u8; 4] = rest[..4].try_into().ok()?;
            (Ipv4Addr::from(o).into(), &rest[4..])
        }
        6 if rest.len() >= 16 => {
            let o: [u8; 16] = rest[..16].try_into().ok()?;
            (Ipv6Addr::from(o).into(), &rest[16..])
        }
        _ => return None,
    };
    let port = u16::from_be_bytes(rest.get(..2)?.try_into().ok()?);
    Some((SocketAddr::new(ip, port), &rest[2..]))
}

/// Encodes `m` into `out` (cleared first).
pub fn encode(m: &Message<'_>, out: &mut Vec<u8>) {
    out.clear();
    match m {
        Message::Owned(list) => {
            out.push(b'O');
            for &a in list {
                put_addr(out, a);
            }
        }
        Message::Sync => out.push(b'S'),
        Message::Data(a, payload) | Message::Bounce(a, payload) => {
            out.push(if matches!(m, Message::Data(..)) { b'D' } else { b'B' });
            put_addr(out, *a);
            out.extend_from_slice(payload);
        }
    }
}

/// Decodes one packet; `None` when it is malformed.
pub fn decode(b: &[u8]) -> Option<Message<'_>> {
    let (&tag, mut rest) = b.split_first()?;
    match tag {
        b'O' => {
            let mut list = Vec::new();
            while !rest.is_empty() {
                let (a, r) = get_addr(rest)?;
                list.push(a);
                rest = r;
            }
            Some(Message::Owned(list))
        }
        b'S' if rest.is_empty() => Some(Message::Sync),
        b'D' => get_addr(rest).map(|(a, p)| Message::Data(a, p)),
        b'B' => get_addr(rest).map(|(a, p)| Message::Bounce(a, p)),
        _ => None,
    }
}

/// A seqpacket pair: (the old process's end, the new process's end).
pub fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let (a, b) = socket2::Socket::pair(socket2::Domain::UNIX, socket2::Type::SEQPACKET, None)?;
    Ok((a.into(), b.into()))
}

/// One end of a tunnel, driven by the runtime.
pub struct Tunnel {
    fd: AsyncFd<socket2::Socket>,
    buf: Vec<u8>,
}

impl Tunnel {
    /// Wraps an end (made non-blocking); call inside the runtime.
    pub fn new(fd: OwnedFd) -> io::Result<Tunnel> {
        let socket = socket2::Socket::from(fd);
        socket.set_nonblocking(true)?;
        // SAFETY: the socket2::Socket owns its descriptor and always returns that same one; it is
        // moved into the AsyncFd, which closes it only when dropped.
        let fd = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE | Interest::WRITABLE) }?;
        Ok(Tunnel {
            fd,
            buf: Vec::with_capacity(crate::udp::driver::MAX_DATAGRAM + 32),
        })
    }

    /// Sends `m` now if the socket has room, else drops it (as the network drops a datagram).
    pub fn try_send(&mut self, m: &Message<'_>) -> io::Result<bool> {
        encode(m, &mut self.buf);
        match self.fd.get_ref().send(&self.buf) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Sends `m`, waiting for room.
    pub async fn send(&mut self, m: &Message<'_>) -> io::Result<()> {
        encode(m, &mut self.buf);
        loop {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| fd.get_ref().send(&self.buf)) {
                Ok(sent) => return sent.map(drop),
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends the owned-client list (in packets of [`OWNED_PER_PACKET`]) and then `Sync`.
    pub async fn send_owned(&mut self, clients: &[SocketAddr]) -> io::Result<()> {
        for chunk in clients.chunks(OWNED_PER_PACKET) {
            self.send(&Message::Owned(chunk.to_vec())).await?;
        }
        self.send(&Message::Sync).await
    }

    /// Receives one packet into `buf` (sized for the largest datagram plus header); `Ok(0)` means
    /// the other process closed its end.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            // socket2's `recv` wants uninitialised memory; `Read for &Socket` takes a plain slice.
            match guard.try_io(|fd| io::Read::read(&mut fd.get_ref(), buf)) {
                Ok(got) => return got,
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips() {
        let v4: SocketAddr = "192.0.2.7:5353".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:65535".parse().unwrap();
        let mut buf = Vec::new();
        for m in [
            Message::Owned(vec![v4, v6, v4]),
            Message::Owned(vec![]),
            Message::Sync,
            Message::Data(v6, b"payload"),
            Message::Bounce(v4, b""),
        ] {
            encode(&m, &mut buf);
            assert_eq!(decode(&buf), Some(m));
        }
    }

    #[test]
    fn malformed_packets_decode_to_none() {
        for bad in [
            &b""[..],
            b"X",
            b"S1",
            b"D",
            b"D\x04\x01\x02",
            b"O\x06\x00",
            b"B\x05\x00\x00\x00\x00\x00\x00",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn packets_keep_their_boundaries_and_close_reads_zero() {
        let (a, b) = pair().unwrap();
        let mut a = Tunnel::new(a).unwrap();
        let b = Tunnel::new(b).unwrap();
        let client: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let many: Vec<SocketAddr> = (0..2500).map(|p| SocketAddr::new(client.ip(), p)).collect();
        let sender = tokio::spawn(async move {
            a.send_owned(&many).await.unwrap();
            assert!(a.try_send(&Message::Data(client, b"x")).unwrap());
        });
        let mut buf = vec![0u8; 70_000];
        let mut owned = 0;
        loop {
            let n = b.recv(&mut buf).await.unwrap();
            match decode(&buf[..n]).unwrap() {
                Message::Owned(list) => owned += list.len(),
                Message::Sync => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(owned, 2500);
        let n = b.recv(&mut buf).await.unwrap();
        assert_eq!(decode(&buf[..n]), Some(Message::Data(client, b"x")));
        sender.await.unwrap();
        assert_eq!(b.recv(&mut buf).await.unwrap(), 0);
    }
}
