//! Reading a header off a real loopback connection: what is stripped, what is kept for the
//! preview, and how a bad or slow source ends.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::{read_header, InboundError};
use crate::proxy_protocol::encode::encode_v2;
use crate::proxy_protocol::{Command, Transport};

/// A connected pair: (what the front writes to, what pmmux reads from).
async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    let (accepted, _) = listener.accept().await.unwrap();
    (front, accepted)
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
    let real = "127.0.0.1:1".parse().unwrap();
    assert_eq!(accepted.client(real), "192.0.2.7:5555".parse().unwrap());
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
    let real = "127.0.0.1:1".parse().unwrap();
    assert_eq!(accepted.client(real), real);
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
