use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;

use super::*;

async fn pair() -> (Arc<UdpSocket>, UdpSocket) {
    let a = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    (a, b)
}

/// Reads `n` datagrams one by one (a plain socket: a GSO run arrives cut into its datagrams).
async fn read_n(socket: &UdpSocket, n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 70_000];
    while out.len() < n {
        let wait = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf));
        let got = wait.await.expect("datagram in time").unwrap();
        out.push(buf[..got].to_vec());
    }
    out
}

fn mixed() -> Vec<Vec<u8>> {
    let mut sent: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 1200]).collect();
    sent.push(vec![200; 700]);
    sent.push(vec![201; 1200]);
    sent.push(Vec::new());
    sent.push(vec![202; 3000]);
    sent.extend((0..70u8).map(|i| vec![i; 900]));
    sent
}

/// Runs of equal datagrams (longer than one GSO send takes), a shorter last one, a different
/// size and an empty datagram all arrive as the datagrams they were, in order.
#[tokio::test]
async fn a_send_batch_delivers_each_datagram_as_it_was() {
    let (from, to) = pair().await;
    let batcher = Batcher::new(&from);
    let dest = to.local_addr().unwrap();
    let sent = mixed();
    let mut tx = SendBatch::new();
    let mut total = Sent::default();
    for d in &sent {
        total += tx.push(&batcher, &from, dest, d).unwrap();
    }
    total += tx.flush(&batcher).unwrap();
    assert_eq!(tx.len(), 0);
    assert_eq!(total.datagrams, sent.len() as u64);
    assert_eq!(total.bytes, sent.iter().map(|d| d.len() as u64).sum::<u64>());
    assert_eq!(read_n(&to, sent.len()).await, sent);
}

/// A batched receive returns every queued datagram with its sender, from several senders.
#[tokio::test]
async fn a_receive_batch_takes_many_datagrams_each_with_its_sender() {
    let listening = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let batcher = Batcher::new(&listening);
    let addr = listening.local_addr().unwrap();
    let (a, b) = pair().await;
    let mut expected = Vec::new();
    for i in 0..40u8 {
        let s: &UdpSocket = if i % 3 == 0 { &b } else { &a };
        s.send_to(&[i; 100], addr).await.unwrap();
        expected.push((s.local_addr().unwrap(), vec![i; 100]));
    }
    let mut rx = RecvBatch::new();
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let wait = tokio::time::timeout(Duration::from_secs(5), batcher.recv(&listening, &mut rx));
        wait.await.expect("datagrams in time").unwrap();
        got.extend(rx.iter().map(|(from, d)| (from, d.to_vec())));
    }
    assert_eq!(got, expected);
}

/// With GRO on the receiving socket, GSO runs come back as their datagrams all the same.
#[tokio::test]
async fn gso_runs_received_with_gro_are_cut_back_into_their_datagrams() {
    let (from, to) = pair().await;
    let batcher = Batcher::new(&to);
    let dest = to.local_addr().unwrap();
    let sent = mixed();
    let mut tx = SendBatch::new();
    for d in &sent {
        tx.push(&batcher, &from, dest, d).unwrap();
    }
    tx.flush(&batcher).unwrap();
    let mut rx = RecvBatch::new();
    let mut got = Vec::new();
    while got.len() < sent.len() {
        let wait = tokio::time::timeout(Duration::from_secs(5), batcher.recv(&to, &mut rx));
        wait.await.expect("datagrams in time").unwrap();
        got.extend(rx.iter().map(|(_, d)| d.to_vec()));
    }
    assert_eq!(got, sent);
    println!("gso={} gro={}", batcher.gso(), batcher.gro());
}

/// The listener's fragmentation setting is the one it had: a large datagram still goes out.
#[tokio::test]
async fn the_listener_may_still_fragment() {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let before = get_int(&socket, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER);
    let _batcher = Batcher::new(&socket);
    assert_eq!(get_int(&socket, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER), before);
}
