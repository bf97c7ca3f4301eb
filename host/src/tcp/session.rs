//! Serving: drives a plugin's sans-I/O session. The host feeds it client bytes (the preview first)
//! and writes back whatever it puts in the output buffer, until it asks to close or the client leaves.

use abi_stable::std_types::{RResult, RSlice, RVec};
use pmmux_plugin_api::ffi::SessionBox;
use pmmux_plugin_api::SessionCtl;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::tcp::relay::Transferred;

/// Read size while serving.
const CHUNK: usize = 16 * 1024;

/// Why a served connection ended early.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The session returned an error (the plugin panicked).
    #[error("plugin session failed: {0}")]
    Plugin(String),
    /// Reading from or writing to the client failed.
    #[error("client I/O error: {0}")]
    Client(#[from] std::io::Error),
}

/// Runs `session` over `client`, starting with `preview`.
pub async fn serve(client: &mut TcpStream, mut session: SessionBox, preview: &[u8]) -> Result<Transferred, ServeError> {
    let mut moved = Transferred {
        up: preview.len() as u64,
        down: 0,
    };
    let mut out = RVec::new();
    let mut ctl = step(session.on_data(RSlice::from_slice(preview), &mut out))?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        if !out.is_empty() {
            client.write_all(&out).await?;
            moved.down += out.len() as u64;
            out.clear();
        }
        if ctl == SessionCtl::Close {
            let _ = client.shutdown().await;
            return Ok(moved);
        }
        let n = client.read(&mut buf).await?;
        if n == 0 {
            // Whatever the session answers, the client has finished: write its last words and close.
            let _ = step(session.on_eof(&mut out))?;
            if !out.is_empty() {
                client.write_all(&out).await?;
                moved.down += out.len() as u64;
            }
            let _ = client.shutdown().await;
            return Ok(moved);
        }
        moved.up += n as u64;
        ctl = step(session.on_data(RSlice::from_slice(&buf[..n]), &mut out))?;
    }
}

fn step(result: RResult<SessionCtl, abi_stable::std_types::RString>) -> Result<SessionCtl, ServeError> {
    match result {
        RResult::ROk(ctl) => Ok(ctl),
        RResult::RErr(e) => Err(ServeError::Plugin(e.into())),
    }
}
