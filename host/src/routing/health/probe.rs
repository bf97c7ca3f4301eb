//! One health check's I/O: a connect to the backend's target (TCP, or a `unix:` socket) within the timeout, or, when the
//! backend's plugin gives a [`HealthProbe`], its bytes sent over TCP or UDP and the answer fed to
//! the plugin's `health_verdict` until it decides (bounded by [`MAX_ANSWER`] and the timeout).

use std::time::Duration;

use abi_stable::std_types::{ROption, RResult, RSlice};
use pmmux_plugin_api::ffi::{HealthProbe, HealthTransport, HealthVerdict};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{lookup_host, UdpSocket};

use super::state::Outcome;
use crate::routing::registry::{Backend, BackendKind};
use crate::tcp::stream::Stream;

/// Most answer bytes a check reads before giving up on a verdict.
pub(crate) const MAX_ANSWER: usize = 64 * 1024;

/// Runs one check of `backend` (which has a target), bounded by `timeout`.
pub(crate) async fn check(backend: &Backend, target: &str, timeout: Duration) -> Outcome {
    let probe = match &backend.kind {
        BackendKind::Plugin(object) => match object.health_probe() {
            RResult::ROk(ROption::RSome(p)) => Some(p),
            RResult::ROk(ROption::RNone) => None,
            RResult::RErr(e) => return Err(format!("plugin hook `health_probe` failed: {e}")),
        },
        BackendKind::Pass | BackendKind::Noop => None,
    };
    let ms = timeout.as_millis();
    let run = async {
        match probe {
            None => Stream::connect(target, timeout)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Some(p) if p.transport == HealthTransport::Tcp => tcp(backend, target, timeout, &p).await,
            Some(p) => udp(backend, target, &p).await,
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("no verdict within {ms} ms")),
    }
}

/// Asks the plugin about the answer so far: `Some` once it decided.
fn verdict(backend: &Backend, answer: &[u8], closed: bool) -> Option<Outcome> {
    let BackendKind::Plugin(object) = &backend.kind else {
        return Some(Ok(()));
    };
    match object.health_verdict(RSlice::from_slice(answer), closed) {
        RResult::ROk(HealthVerdict::Healthy) => Some(Ok(())),
        RResult::ROk(HealthVerdict::Unhealthy(why)) => Some(Err(why.into())),
        RResult::ROk(HealthVerdict::NeedMore) => None,
        RResult::RErr(e) => Some(Err(format!("plugin hook `health_verdict` failed: {e}"))),
    }
}

async fn tcp(backend: &Backend, target: &str, timeout: Duration, probe: &HealthProbe) -> Outcome {
    let mut stream = Stream::connect(target, timeout).await.map_err(|e| e.to_string())?;
    if !probe.send.is_empty() {
        stream
            .write_all(&probe.send)
            .await
            .map_err(|e| format!("upstream {target}: sending the probe failed: {e}"))?;
    }
    let mut answer: Vec<u8> = Vec::with_capacity(512);
    loop {
        let mut chunk = [0u8; 2048];
        let room = (MAX_ANSWER - answer.len()).min(chunk.len());
        let n = stream
            .read(&mut chunk[..room])
            .await
            .map_err(|e| format!("upstream {target}: reading the answer failed: {e}"))?;
        if n == 0 {
            return verdict(backend, &answer, true)
                .unwrap_or_else(|| Err(format!("upstream {target} closed without a complete answer")));
        }
        answer.extend_from_slice(&chunk[..n]);
        if let Some(outcome) = verdict(backend, &answer, false) {
            return outcome;
        }
        if answer.len() >= MAX_ANSWER {
            return Err(format!(
                "upstream {target}: no verdict within {MAX_ANSWER} answer bytes"
            ));
        }
    }
}

async fn udp(backend: &Backend, target: &str, probe: &HealthProbe) -> Outcome {
    if crate::config::listen::is_unix_target(target) {
        return Err(format!(
            "upstream {target}: a UDP probe cannot reach a Unix stream socket"
        ));
    }
    let addr = lookup_host(target)
        .await
        .map_err(|e| format!("upstream {target}: cannot resolve: {e}"))?
        .next()
        .ok_or_else(|| format!("upstream {target}: no address"))?;
    let bind = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let socket = UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("cannot open a UDP socket for the check: {e}"))?;
    socket
        .connect(addr)
        .await
        .map_err(|e| format!("upstream {target}: {e}"))?;
    socket
        .send(&probe.send)
        .await
        .map_err(|e| format!("upstream {target}: sending the probe failed: {e}"))?;
    let mut buf = vec![0u8; MAX_ANSWER];
    // Each reply datagram is judged alone; a refused port shows as an error on receive.
    loop {
        let n = socket
            .recv(&mut buf)
            .await
            .map_err(|e| format!("upstream {target}: {e}"))?;
        if let Some(outcome) = verdict(backend, &buf[..n], false) {
            return outcome;
        }
    }
}
