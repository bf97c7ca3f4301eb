//! Keeping CAP_NET_ADMIN for transparent backends across `--user`. Capabilities belong to threads:
//! glibc's `setuid` switches every thread of the process, and each one keeps its capabilities only
//! if it set `PR_SET_KEEPCAPS` itself, so the runtime's worker threads cannot keep it. One thread
//! does: the keeper, started before the drop, sets `PR_SET_KEEPCAPS`, and after the drop narrows its
//! capabilities to CAP_NET_ADMIN alone (`capset`). It then makes every transparent socket (sets
//! IP_TRANSPARENT and binds it, a few system calls) for the workers, which connect and relay as
//! usual. No other thread holds any capability, and root cannot be regained.

use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

use socket2::{Protocol, Socket, Type};

/// What the keeper is asked.
enum Request {
    /// A transparent socket bound to `source`.
    Bind {
        source: SocketAddr,
        kind: Type,
        protocol: Protocol,
        reply: tokio::sync::oneshot::Sender<io::Result<Socket>>,
    },
    /// Whether IP_TRANSPARENT can be set.
    Probe(mpsc::Sender<io::Result<()>>),
    /// The drop happened: keep CAP_NET_ADMIN only.
    Narrow(mpsc::Sender<io::Result<()>>),
}

static KEEPER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();

fn keeper() -> Option<mpsc::Sender<Request>> {
    KEEPER
        .get()
        .map(|tx| tx.lock().unwrap_or_else(|p| p.into_inner()).clone())
}

/// Starts the keeper (before the privilege drop); returns once it has set `PR_SET_KEEPCAPS`.
pub fn start() -> io::Result<()> {
    let (tx, rx) = mpsc::channel::<Request>();
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("pmmux-cap-keeper".into())
        .spawn(move || {
            // SAFETY: prctl with integer arguments; it changes only this thread's credentials.
            let kept = unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
            let _ = ready_tx.send(if kept == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            });
            serve(rx);
        })?;
    ready_rx
        .recv()
        .map_err(|_| io::Error::other("the capability keeper thread ended"))??;
    KEEPER
        .set(Mutex::new(tx))
        .map_err(|_| io::Error::other("the capability keeper is already running"))
}

/// After the drop: the keeper narrows its capabilities to CAP_NET_ADMIN.
pub fn narrow() -> io::Result<()> {
    ask(Request::Narrow)
}

/// Whether the keeper runs (a transparent socket is then made by it).
pub(crate) fn running() -> bool {
    KEEPER.get().is_some()
}

/// The probe, run by the keeper.
pub(crate) fn probe() -> io::Result<()> {
    ask(Request::Probe)
}

fn ask(request: impl FnOnce(mpsc::Sender<io::Result<()>>) -> Request) -> io::Result<()> {
    let tx = keeper().ok_or_else(|| io::Error::other("the capability keeper is not running"))?;
    let (reply, answer) = mpsc::channel();
    tx.send(request(reply))
        .map_err(|_| io::Error::other("the capability keeper thread ended"))?;
    answer
        .recv()
        .map_err(|_| io::Error::other("the capability keeper thread ended"))?
}

/// A transparent socket bound to `source`, made by the keeper.
pub(crate) async fn bound(source: SocketAddr, kind: Type, protocol: Protocol) -> io::Result<Socket> {
    let tx = keeper().ok_or_else(|| io::Error::other("the capability keeper is not running"))?;
    let (reply, answer) = tokio::sync::oneshot::channel();
    let request = Request::Bind {
        source,
        kind,
        protocol,
        reply,
    };
    tx.send(request)
        .map_err(|_| io::Error::other("the capability keeper thread ended"))?;
    answer
        .await
        .map_err(|_| io::Error::other("the capability keeper thread ended"))?
}

fn serve(rx: mpsc::Receiver<Request>) {
    for request in rx {
        match request {
            Request::Bind {
                source,
                kind,
                protocol,
                reply,
            } => {
                let _ = reply.send(super::bound_here(source, kind, protocol));
            }
            Request::Probe(reply) => {
                let _ = reply.send(super::probe_here());
            }
            Request::Narrow(reply) => {
                let _ = reply.send(keep_only_net_admin());
            }
        }
    }
}

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;
/// `CAP_NET_ADMIN`.
const CAP_NET_ADMIN: u32 = 12;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// This thread keeps CAP_NET_ADMIN, effective and permitted, and nothing else.
fn keep_only_net_admin() -> io::Result<()> {
    let header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let bit = 1u32 << CAP_NET_ADMIN;
    let data = [
        CapData {
            effective: bit,
            permitted: bit,
            inheritable: 0,
        },
        CapData {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        },
    ];
    // SAFETY: capset reads a version-3 header and two data words, both valid for the call; pid 0
    // is the calling thread.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
