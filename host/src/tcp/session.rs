//! Serving: drives a plugin's sans-I/O session. The host feeds it client bytes (the preview first)
//! and writes back whatever it puts in the output buffer, until it asks to close or the client leaves.

use crate::tcp::stream::Stream;
use abi_stable::std_types::{RResult, RSlice, RVec};
use pmmux_plugin_api::ffi::SessionBox;
use pmmux_plugin_api::SessionCtl;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::tcp::error::{ConnError, Op, Peer, SideError};
use crate::tcp::relay::{Cut, Transferred};

/// Read size while serving.
const CHUNK: usize = 16 * 1024;

/// Runs `session` over `client`, starting with `preview`. A client that sends nothing for `idle`
/// is closed (`cut` says so).
pub(crate) async fn serve(
    client: &mut Stream,
    mut session: SessionBox,
    preview: &[u8],
    idle: std::time::Duration,
) -> Result<Transferred, ConnError> {
    let mut moved = Transferred {
        up: preview.len() as u64,
        down: 0,
        cut: None,
    };
    let mut out = RVec::new();
    let mut ctl = step("on_data", session.on_data(RSlice::from_slice(preview), &mut out))?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        flush(client, &mut out, &mut moved).await?;
        if ctl == SessionCtl::Close {
            let _ = client.shutdown().await;
            return Ok(moved);
        }
        let Ok(read) = tokio::time::timeout(idle, client.read(&mut buf)).await else {
            moved.cut = Some(Cut::Idle);
            let _ = client.shutdown().await;
            return Ok(moved);
        };
        let n = read.map_err(SideError::on(Peer::Client, Op::Read))?;
        if n == 0 {
            // Whatever the session answers, the client has finished: write its last words and close.
            let _ = step("on_eof", session.on_eof(&mut out))?;
            flush(client, &mut out, &mut moved).await?;
            let _ = client.shutdown().await;
            return Ok(moved);
        }
        moved.up += n as u64;
        ctl = step("on_data", session.on_data(RSlice::from_slice(&buf[..n]), &mut out))?;
    }
}

/// Writes what the session put in `out` to the client, counts it and empties `out`.
async fn flush(client: &mut Stream, out: &mut RVec<u8>, moved: &mut Transferred) -> Result<(), ConnError> {
    if !out.is_empty() {
        client
            .write_all(out)
            .await
            .map_err(SideError::on(Peer::Client, Op::Write))?;
        moved.down += out.len() as u64;
        out.clear();
    }
    Ok(())
}

/// The session's answer to `hook`, or the plugin error naming it.
fn step(
    hook: &'static str,
    result: RResult<SessionCtl, abi_stable::std_types::RString>,
) -> Result<SessionCtl, ConnError> {
    match result {
        RResult::ROk(ctl) => Ok(ctl),
        RResult::RErr(e) => Err(ConnError::Plugin {
            hook,
            message: e.into(),
        }),
    }
}
