//! Batched UDP I/O: many datagrams per system call each way. A receive takes up to [`BATCH`]
//! datagrams at once (`recvmmsg`), and with UDP GRO a run of one sender's datagrams arrives as one
//! buffer cut at a stride; a send hands a run of equal-sized datagrams to one destination to the
//! kernel as one buffer (UDP GSO), which cuts it into the original datagrams. Every datagram is
//! still routed on its own: batching changes how many system calls carry them, not where they go.
//!
//! The system calls and the detection of what the kernel supports come from `quinn-udp` (the QUIC
//! stack's UDP layer: `recvmmsg`, GRO stride decoding, GSO with a fallback to one datagram per
//! send when the kernel or the device refuses it at run time). It also turns on options QUIC
//! wants and a relay does not: [`Batcher::new`] puts them back as they were, so a large datagram
//! is still sent (fragmented) rather than refused, and no datagram carries control messages
//! (destination address, TOS) nobody reads.
//!
//! Buffers are allocated once per listener (receive) and per worker thread (replies); no
//! datagram allocates.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;

use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams (or GRO buffers) taken by one receive.
pub(crate) const BATCH: usize = 16;
/// One receive slot: any datagram whole, or one GRO buffer (the kernel keeps those under 64 KiB).
pub(crate) const SLOT: usize = 64 * 1024;
/// Receive buffer asked for a listening socket (the kernel caps it at `net.core.rmem_max`): at
/// line rate the default (~200 KiB, about 90 datagrams) overflows whenever the listener's thread
/// is off the CPU for a millisecond; this absorbs some 20 ms. Kernel memory, used only while
/// datagrams wait.
const LISTENER_RECV_BUFFER: usize = 4 * 1024 * 1024;
/// Largest run one GSO send carries (the kernel allows 64 segments and 64 KiB).
const MAX_RUN_BYTES: usize = 65_000;

/// What the kernel lets this process do with UDP sockets: shared by a listener's receives and
/// every send of its flows. GSO is turned off for good when a send with it fails.
pub(crate) struct Batcher {
    /// `None` when the listening socket refused what batching needs: one datagram per call then.
    state: Option<UdpSocketState>,
}

impl Batcher {
    /// Prepares `socket` (the listening socket) for batched receives, with GRO when the kernel
    /// has it, and a receive buffer of [`LISTENER_RECV_BUFFER`]. A socket that refuses the options batching needs is served one datagram per
    /// system call.
    pub(crate) fn new(socket: &UdpSocket) -> Batcher {
        let saved = SavedOptions::read(socket);
        let state = match UdpSocketState::new(UdpSockRef::from(socket)) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::info!(error = %e, "UDP batching unavailable on this socket; one datagram per system call");
                None
            }
        };
        saved.restore(socket);
        let sock = socket2::SockRef::from(socket);
        if sock.recv_buffer_size().is_ok_and(|n| n < LISTENER_RECV_BUFFER) {
            let _ = sock.set_recv_buffer_size(LISTENER_RECV_BUFFER);
        }
        Batcher { state }
    }

    /// Whether sends may carry several datagrams (GSO).
    pub(crate) fn gso(&self) -> bool {
        self.max_segments() > 1
    }

    fn max_segments(&self) -> usize {
        self.state.as_ref().map_or(1, UdpSocketState::max_gso_segments)
    }

    /// Whether receives may return runs of datagrams (GRO).
    pub(crate) fn gro(&self) -> bool {
        self.state.as_ref().is_some_and(|s| s.gro_segments() > 1)
    }

    /// Asks the kernel to coalesce runs of one sender's datagrams on `socket` (an upstream
    /// socket); a refusal leaves it receiving them one by one.
    pub(crate) fn enable_gro(&self, socket: &UdpSocket) {
        if self.gro() {
            set_int(socket, libc::SOL_UDP, libc::UDP_GRO, 1);
        }
    }

    /// Waits until `socket` is readable, then receives up to [`BATCH`] buffers into `rx`.
    pub(crate) async fn recv(&self, socket: &UdpSocket, rx: &mut RecvBatch) -> io::Result<()> {
        loop {
            socket.readable().await?;
            match self.try_recv(socket, rx) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }

    /// Receives what is queued now (`WouldBlock` when nothing is).
    ///
    /// A batch that is not full took everything queued: the socket is then marked not readable
    /// at once (tokio clears it only if no datagram arrived since it was seen readable), which
    /// saves the receive that would only find the queue empty — a system call per wake-up.
    pub(crate) fn try_recv(&self, socket: &UdpSocket, rx: &mut RecvBatch) -> io::Result<()> {
        rx.count = 0;
        let result = socket.try_io(Interest::READABLE, || {
            rx.count = self.recv_now(socket, rx)?;
            // (Without batching, one datagram says nothing about what is left.)
            if rx.count < BATCH && self.state.is_some() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(())
        });
        match result {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && rx.count > 0 => Ok(()),
            other => other,
        }
    }

    fn recv_now(&self, socket: &UdpSocket, rx: &mut RecvBatch) -> io::Result<usize> {
        let Some(state) = &self.state else {
            let (n, from) = socket2::SockRef::from(socket).recv_from(uninit(&mut rx.buf[..SLOT]))?;
            rx.meta[0] = RecvMeta {
                addr: from.as_socket().unwrap_or(rx.meta[0].addr),
                len: n,
                stride: n,
                ..RecvMeta::default()
            };
            return Ok(1);
        };
        let mut chunks = rx.buf.chunks_mut(SLOT);
        let mut slices: [IoSliceMut<'_>; BATCH] =
            std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or(&mut [])));
        state.recv(UdpSockRef::from(socket), &mut slices, &mut rx.meta)
    }

    /// One send of `contents` to `to`: one datagram, or when `segment` is shorter, datagrams of
    /// `segment` bytes (the last may be shorter) in one GSO send. A GSO send the kernel refuses
    /// (the device cannot, an old kernel) is sent again datagram by datagram, and GSO stays off.
    fn send(&self, socket: &UdpSocket, to: SocketAddr, contents: &[u8], segment: usize) -> io::Result<()> {
        let Some(state) = &self.state else {
            return socket2::SockRef::from(socket).send_to(contents, &to.into()).map(drop);
        };
        let transmit = Transmit {
            destination: to,
            ecn: None,
            contents,
            segment_size: (segment < contents.len()).then_some(segment),
            src_ip: None,
        };
        match state.try_send(UdpSockRef::from(socket), &transmit) {
            Err(e) if transmit.segment_size.is_some() && !self.gso() => {
                tracing::info!(error = %e, "UDP GSO refused by the kernel; datagrams are sent one by one from now on");
                for datagram in contents.chunks(segment) {
                    self.send(socket, to, datagram, datagram.len())?;
                }
                Ok(())
            }
            other => other,
        }
    }
}

/// The options `quinn-udp` sets for QUIC that a relay leaves as they were: fragmentation, and the
/// per-datagram control messages (destination address, TOS / traffic class).
const RESTORED: [(libc::c_int, libc::c_int); 7] = [
    (libc::IPPROTO_IP, libc::IP_MTU_DISCOVER),
    (libc::IPPROTO_IP, libc::IP_PKTINFO),
    (libc::IPPROTO_IP, libc::IP_RECVTOS),
    (libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER),
    (libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG),
    (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO),
    (libc::IPPROTO_IPV6, libc::IPV6_RECVTCLASS),
];

/// The values of [`RESTORED`] before `quinn-udp` changed them (`None`: not an option here).
struct SavedOptions([Option<libc::c_int>; RESTORED.len()]);

impl SavedOptions {
    fn read(socket: &impl AsFd) -> SavedOptions {
        SavedOptions(RESTORED.map(|(level, name)| get_int(socket, level, name)))
    }

    fn restore(&self, socket: &impl AsFd) {
        for ((level, name), value) in RESTORED.iter().zip(self.0) {
            if let Some(v) = value {
                set_int(socket, *level, *name, v);
            }
        }
    }
}

/// A byte buffer as the `MaybeUninit` slice socket2 reads into (it is initialised: any bytes do).
fn uninit(buf: &mut [u8]) -> &mut [std::mem::MaybeUninit<u8>] {
    // SAFETY: u8 and MaybeUninit<u8> have the same layout, and the bytes only ever get written.
    unsafe { &mut *(buf as *mut [u8] as *mut [std::mem::MaybeUninit<u8>]) }
}

fn get_int(socket: &impl AsFd, level: libc::c_int, name: libc::c_int) -> Option<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are valid for the call; the kernel writes at most len bytes.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_fd().as_raw_fd(),
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(value)
}

fn set_int(socket: &impl AsFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) {
    // SAFETY: the option value is a c_int that outlives the call.
    let _ = unsafe {
        libc::setsockopt(
            socket.as_fd().as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

/// Buffers for one batched receive: [`BATCH`] slots of [`SLOT`] bytes, allocated once and
/// zero-filled lazily by the system (pages a small datagram never reaches cost no memory).
pub(crate) struct RecvBatch {
    buf: Vec<u8>,
    meta: [RecvMeta; BATCH],
    count: usize,
}

impl RecvBatch {
    pub(crate) fn new() -> RecvBatch {
        RecvBatch {
            buf: vec![0u8; BATCH * SLOT],
            meta: [RecvMeta::default(); BATCH],
            count: 0,
        }
    }

    /// Every datagram of the last receive, in order, each with its sender (a GRO buffer is cut
    /// back into its datagrams; an empty datagram is one too).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        (0..self.count).flat_map(move |s| {
            let (from, data) = self.slot(s);
            let empty = data.is_empty().then_some((from, data));
            data.chunks(self.stride(s)).map(move |d| (from, d)).chain(empty)
        })
    }

    fn slot(&self, i: usize) -> (SocketAddr, &[u8]) {
        let m = &self.meta[i];
        let start = i * SLOT;
        (m.addr, &self.buf[start..start + m.len.min(SLOT)])
    }

    fn stride(&self, i: usize) -> usize {
        self.meta[i].stride.max(1)
    }
}

/// What a send carried.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sent {
    /// Payload bytes.
    pub bytes: u64,
    /// Datagrams.
    pub datagrams: u64,
}

impl std::ops::AddAssign for Sent {
    fn add_assign(&mut self, other: Sent) {
        self.bytes += other.bytes;
        self.datagrams += other.datagrams;
    }
}

/// A run of datagrams waiting to go out together: same socket, same destination, same size (the
/// last may be shorter). [`SendBatch::push`] sends the run first when the next datagram cannot
/// join it; [`SendBatch::flush`] sends what waits.
pub(crate) struct SendBatch {
    buf: Vec<u8>,
    socket: Option<Arc<UdpSocket>>,
    to: Option<SocketAddr>,
    segment: usize,
    count: usize,
    /// The last datagram was shorter than the segment: nothing more may join.
    closed: bool,
}

impl SendBatch {
    pub(crate) fn new() -> SendBatch {
        SendBatch {
            buf: Vec::with_capacity(MAX_RUN_BYTES),
            socket: None,
            to: None,
            segment: 0,
            count: 0,
            closed: false,
        }
    }

    /// Queues `data` for `to` on `socket`. Returns what a run sent now to make room carried, or
    /// why that send failed (its datagrams are dropped, as the network would).
    pub(crate) fn push(
        &mut self,
        batcher: &Batcher,
        socket: &Arc<UdpSocket>,
        to: SocketAddr,
        data: &[u8],
    ) -> io::Result<Sent> {
        let joins = self.count > 0
            && !self.closed
            && !data.is_empty()
            && data.len() <= self.segment
            && self.to == Some(to)
            && self.socket.as_ref().is_some_and(|s| Arc::ptr_eq(s, socket))
            && self.buf.len() + data.len() <= MAX_RUN_BYTES
            && self.count < batcher.max_segments();
        let mut result = Ok(Sent::default());
        if !joins {
            result = self.flush(batcher);
            self.socket = Some(Arc::clone(socket));
            self.to = Some(to);
            self.segment = data.len();
        }
        self.buf.extend_from_slice(data);
        self.count += 1;
        self.closed = data.len() < self.segment;
        result
    }

    /// Sends the waiting run, if any; returns what it carried.
    pub(crate) fn flush(&mut self, batcher: &Batcher) -> io::Result<Sent> {
        if self.count == 0 {
            return Ok(Sent::default());
        }
        let sent = Sent {
            bytes: self.buf.len() as u64,
            datagrams: self.count as u64,
        };
        let result = match (&self.socket, self.to) {
            (Some(socket), Some(to)) => batcher.send(socket, to, &self.buf, self.segment.max(1)).map(|()| sent),
            _ => Ok(Sent::default()),
        };
        self.buf.clear();
        self.count = 0;
        self.closed = false;
        self.socket = None;
        result
    }

    /// Datagrams waiting.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.count
    }
}

#[cfg(test)]
mod tests;
