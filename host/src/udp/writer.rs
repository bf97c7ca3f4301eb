//! The client writer every plugin backend receives in `init_udp` (the C# pmmux's
//! `IClientWriterFactory`): sends a datagram to a UDP client from the listening socket that client
//! last came through. It never blocks: when the socket's send buffer is full, or the client is not
//! known (its flow expired), the datagram is dropped and the plugin is told so.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::RSlice;
use pmmux_plugin_api::ffi::{ClientWriterBox, FfiClientWriter, FfiClientWriter_TO};
use pmmux_plugin_api::FfiAddr;
use tokio::net::UdpSocket;

/// Which listening socket each UDP client with a live flow came through, and how many flows it has
/// (a client of per-message backends may have one with each).
type Clients = HashMap<SocketAddr, (Weak<UdpSocket>, usize)>;
static CLIENTS: LazyLock<Mutex<Clients>> = LazyLock::new(Default::default);

fn clients() -> MutexGuard<'static, Clients> {
    CLIENTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Notes that `client` talks through `socket` (called when one of its flows is created).
pub(crate) fn remember(client: SocketAddr, socket: &Arc<UdpSocket>) {
    let mut clients = clients();
    let entry = clients.entry(client).or_insert_with(|| (Weak::new(), 0));
    *entry = (Arc::downgrade(socket), entry.1 + 1);
}

/// One flow of `client` ended; forgets the client with its last flow.
pub(crate) fn forget(client: SocketAddr) {
    let mut clients = clients();
    if let Some(entry) = clients.get_mut(&client) {
        entry.1 = entry.1.saturating_sub(1);
        if entry.1 == 0 {
            clients.remove(&client);
        }
    }
}

/// Sends `data` to `to` from `socket` now, or drops it: one non-blocking `sendto` on the descriptor.
/// (tokio's `try_send_to` also reports WouldBlock while the reactor has not yet seen the socket
/// writable, which would drop datagrams a fresh socket could send.)
pub(crate) fn send_now(socket: &UdpSocket, data: &[u8], to: SocketAddr) -> bool {
    socket2::SockRef::from(socket).send_to(data, &to.into()).is_ok()
}

/// A new writer handle for a plugin backend.
pub(crate) fn client_writer() -> ClientWriterBox {
    FfiClientWriter_TO::from_value(HostWriter, TD_Opaque)
}

struct HostWriter;

impl FfiClientWriter for HostWriter {
    fn send_to(&self, client: FfiAddr, data: RSlice<'_, u8>) -> bool {
        let client = SocketAddr::from(client);
        let socket = clients().get(&client).and_then(|(socket, _)| socket.upgrade());
        match socket {
            Some(socket) => send_now(&socket, data.as_slice(), client),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_to_known_clients_only_and_never_blocks() {
        let listening = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let client_addr = client.local_addr().unwrap();
        let writer = client_writer();
        assert!(!writer.send_to(client_addr.into(), RSlice::from_slice(b"unknown")));
        remember(client_addr, &listening);
        assert!(writer.send_to(client_addr.into(), RSlice::from_slice(b"hello")));
        let mut buf = [0u8; 16];
        let wait = std::time::Duration::from_secs(5);
        let (n, from) = tokio::time::timeout(wait, client.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(from, listening.local_addr().unwrap());
        forget(client_addr);
        assert!(!writer.send_to(client_addr.into(), RSlice::from_slice(b"gone")));
        drop(listening);
    }
}
