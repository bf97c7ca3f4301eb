//! Failover within one client connection: when connecting to the routed backend's target fails
//! (refused, timed out, not resolved), the router's ranking gives the next matching backend (same
//! tier by the strategy, then lower tiers) and the connection is dispatched there, the preview
//! replayed again. Detection goes on as it would have without the failed backend: backends still
//! undecided (e.g. because a built-in `pass` decided before the client spoke) may read more of the
//! preview, within the preview limit and a new probe timeout. Only connect failures qualify, so no upstream byte was relayed yet; at most
//! `routing.max_failovers` further backends are tried. Each failure also counts toward the failed
//! backend's health failure threshold when it is health-checked (passive health).

use crate::tcp::stream::Stream;
use abi_stable::std_types::RVec;
use pmmux_plugin_api::Property;

use crate::routing::registry::Backend;
use crate::routing::router::{Decision, Router};
use crate::tcp::error::ConnError;
use crate::tcp::preview::{self, Outcome};
use crate::tcp::relay::{RelayError, Transferred};

/// Whether a relay error happened before the upstream accepted (nothing was sent or relayed).
pub(crate) fn is_connect_failure(e: &RelayError) -> bool {
    matches!(
        e,
        RelayError::Resolve { .. } | RelayError::Connect { .. } | RelayError::ConnectTimeout { .. }
    )
}

/// The connect failure a dispatch ended with, if it did (the only outcome that fails over).
pub(crate) fn connect_failure(result: &Result<Transferred, ConnError>) -> Option<&RelayError> {
    match result {
        Err(ConnError::Relay(e)) if is_connect_failure(e) => Some(e),
        _ => None,
    }
}

/// After connecting to `backend`'s target failed with `e` (see [`connect_failure`]): the next
/// backend to try, with its match properties, or `None` (no other backend, or `done` failovers
/// reached `routing.max_failovers`). `silent` connections (routed by the probe timeout) never fail
/// over.
pub(crate) async fn next(
    stream: &mut Stream,
    router: &mut Router,
    backend: &Backend,
    e: &RelayError,
    preview: &mut Vec<u8>,
    done: u32,
    silent: bool,
) -> Option<(usize, RVec<Property>)> {
    backend
        .stats
        .health
        .record_connect_failure(backend.name(), e.to_string());
    let max = router.registry().routing.max_failovers;
    if silent || done >= max {
        if done >= max && max > 0 {
            tracing::warn!(
                failed = backend.name(),
                max_failovers = max,
                "connect failed; no failover left"
            );
        }
        return None;
    }
    router.fail_over();
    match preview::run(stream, router, preview).await {
        Ok(Outcome::Routed(Decision::Route { index, properties })) => {
            let to = router.registry().backends.get(index).map_or("", |b| b.name());
            tracing::warn!(failed = backend.name(), to, error = %e, attempt = done + 1, "connect failed; failing over");
            Some((index, properties))
        }
        Ok(_) | Err(_) => {
            tracing::debug!(failed = backend.name(), "connect failed; no other backend matches");
            None
        }
    }
}
