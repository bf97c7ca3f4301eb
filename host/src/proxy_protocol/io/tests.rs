//! Reading a header off a real loopback connection: what is stripped, what is kept for the
//! preview, and how a bad or slow source ends.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::{read_header, InboundError};
use crate::proxy_protocol::encode::encode_v2;
use crate::proxy_protocol::{Command, Transport};
use crate::tcp::stream::{Client, Stream};

/// A connected pair: (what the front writes to, what pmmux reads from).
async fn pair() -> (TcpStream, Stream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    let (accepted, _) = listener.accept().await.unwrap();
    (front, Stream::Tcp(accepted))
}

const LIMIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn v1_in_pieces_then_stream_bytes_go_to_the_preview() {
    let (mut front, conn) = pair().await;
    let writer = tokio::spawn(async move {
        for piece in [
            &b"PRO"[..],
            b"XY TCP4 192.0.2.7 ",
            b"127.0.0.1 5555 80\r",
            b"\nGET / HTTP/1.1\r\n",
        ] {
            front.write_all(piece).await.unwrap();
            front.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        front
    });
    let accepted = read_header(&conn, LIMIT).await.unwrap();
    let real = Client::Ip("127.0.0.1:1".parse().unwrap());
    assert_eq!(accepted.client(real), Client::Ip("192.0.2.7:5555".parse().unwrap()));
    // Whatever came with the line is the client's: it is handed to the preview, not lost.
    assert!(b"GET / HTTP/1.1\r\n".starts_with(&accepted.rest), "{:?}", accepted.rest);
    drop(writer.await.unwrap());
}

#[tokio::test]
async fn v2_is_read_exactly_and_local_keeps_the_real_peer() {
    let (mut front, conn) = pair().await;
    let mut bytes = encode_v2(Command::Local, Transport::Unspec, None, &[]);
    bytes.extend_from_slice(b"\x16\x03\x01 tls follows");
    front.write_all(&bytes).await.unwrap();
    let accepted = read_header(&conn, LIMIT).await.unwrap();
    assert!(accepted.rest.is_empty(), "a v2 read stops at the header's end");
    let real = Client::Ip("127.0.0.1:1".parse().unwrap());
    assert_eq!(accepted.client(real.clone()), real);
    let mut left = [0u8; 64];
    let n = conn.try_read(&mut left).unwrap();
    assert_eq!(&left[..n], b"\x16\x03\x01 tls follows");
}

#[tokio::test]
async fn bad_slow_and_closing_sources_end_with_why() {
    let (mut front, conn) = pair().await;
    front.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    assert!(matches!(read_header(&conn, LIMIT).await, Err(InboundError::Invalid(_))));

    let (mut front, conn) = pair().await;
    front.write_all(b"PROXY TCP4 1.2.3.4").await.unwrap();
    let e = read_header(&conn, Duration::from_millis(200)).await.unwrap_err();
    assert!(matches!(e, InboundError::Timeout { got: 18, .. }), "{e}");

    let (mut front, conn) = pair().await;
    front.write_all(b"PROXY TCP4").await.unwrap();
    drop(front);
    let e = read_header(&conn, LIMIT).await.unwrap_err();
    assert!(matches!(e, InboundError::Closed { got: 10 }), "{e}");

    // Oversize v2: refused from its 16 fixed bytes, whatever follows.
    let (mut front, conn) = pair().await;
    let mut huge = encode_v2(Command::Local, Transport::Unspec, None, &[]);
    huge[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
    front.write_all(&huge).await.unwrap();
    let e = read_header(&conn, LIMIT).await.unwrap_err();
    assert!(e.to_string().contains("65535 bytes"), "{e}");
}

/// A v2 header of family UNIX (AF_UNIX, STREAM) naming `src` and `dst`.
fn v2_unix(command: u8, src: &[u8], dst: &[u8]) -> Vec<u8> {
    let mut h = crate::proxy_protocol::V2_SIGNATURE.to_vec();
    h.extend_from_slice(&[0x20 | command, 0x31, 0, 216]);
    for path in [src, dst] {
        let mut field = [0u8; 108];
        field[..path.len()].copy_from_slice(path);
        h.extend_from_slice(&field);
    }
    h
}

#[tokio::test]
async fn over_a_unix_socket_the_unix_family_names_the_client_and_local_keeps_the_real_one() {
    let (front, conn) = tokio::net::UnixStream::pair().unwrap();
    let mut conn = Stream::Unix(conn);
    let mut front = front;
    // PROXY, AF_UNIX: the client is the path named, and the stream's bytes stay for the preview.
    let mut bytes = v2_unix(1, b"/run/front/client.sock", b"/run/pmmux.sock");
    bytes.extend_from_slice(b"GET /");
    front.write_all(&bytes).await.unwrap();
    let accepted = read_header(&conn, LIMIT).await.unwrap();
    let real = Client::Unix(None);
    let named = Client::Unix(Some(std::path::Path::new("/run/front/client.sock").into()));
    assert_eq!(accepted.client(real.clone()), named);
    assert_eq!(named.to_string(), "unix:/run/front/client.sock");
    assert!(accepted.rest.is_empty(), "nothing read past a v2 header");
    let mut rest = [0u8; 5];
    tokio::io::AsyncReadExt::read_exact(&mut conn, &mut rest).await.unwrap();
    assert_eq!(&rest, b"GET /");
    // An unnamed client (empty path), then LOCAL (addresses ignored: the real peer).
    front.write_all(&v2_unix(1, b"", b"/run/pmmux.sock")).await.unwrap();
    assert_eq!(
        read_header(&conn, LIMIT)
            .await
            .unwrap()
            .client(Client::Ip("127.0.0.1:1".parse().unwrap())),
        real
    );
    front.write_all(&v2_unix(0, b"/x", b"/y")).await.unwrap();
    let local = read_header(&conn, LIMIT).await.unwrap();
    assert_eq!(local.header.unix, None);
    assert_eq!(local.client(real.clone()), real);
}

#[tokio::test]
async fn unix_peers_are_trusted_by_their_credentials() {
    use crate::config::listen::PeerTrust;
    let (_front, conn) = tokio::net::UnixStream::pair().unwrap();
    let cred = conn.peer_cred().unwrap();
    let is = |t: &[PeerTrust]| super::is_trusted_peer(t, &conn);
    assert!(!is(&[]));
    assert!(is(&[PeerTrust::Any]));
    assert!(is(&[PeerTrust::Uid(cred.uid())]));
    assert!(is(&[PeerTrust::Uid(cred.uid() + 1), PeerTrust::Gid(cred.gid())]));
    assert!(!is(&[PeerTrust::Uid(cred.uid() + 1), PeerTrust::Gid(cred.gid() + 1)]));
}
