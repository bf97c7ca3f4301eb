//! A plugin's backend with its TCP and UDP hooks turned into plain functions of the bytes. The
//! plugin API is touched here only, so a change to it changes one file. Each plugin is measured
//! in its own test binary (`tests/<plugin>.rs`): two plugin rlibs cannot link into one binary,
//! as both export the plugin root-module symbol.

use std::sync::Arc;

use pmmux_plugin_api::{Backend, BackendSpec, Detection};
use pmmux_plugin_testkit::{conn, spec};

/// A detector's answer, without the properties of a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// "Mine".
    Match,
    /// "Not yet decided" (TCP only: a datagram is whole).
    NeedMore,
    /// "Not mine".
    NoMatch,
}

impl From<Detection> for Verdict {
    fn from(detection: Detection) -> Self {
        match detection {
            Detection::Match(_) => Verdict::Match,
            Detection::NeedMore => Verdict::NeedMore,
            Detection::NoMatch => Verdict::NoMatch,
        }
    }
}

/// One hook over bytes: a TCP preview or one datagram.
pub type Hook = Box<dyn Fn(&[u8]) -> Verdict>;

/// A plugin's backend as two hooks.
pub struct Detector {
    /// The plugin's name.
    pub name: &'static str,
    /// The protocols of the captures it is meant to match (its own, and for `http-response` HTTP).
    pub protocols: Vec<&'static str>,
    /// `Backend::detect` over a TCP preview.
    pub tcp: Hook,
    /// `Backend::can_handle_message` over one datagram.
    pub udp: Hook,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector").field("name", &self.name).finish()
    }
}

/// Builds plugin `name`'s backend from `params` (TOML) with its constructor `new`.
pub fn build<B: Backend>(
    name: &'static str,
    params: &str,
    new: impl FnOnce(&BackendSpec<'_>) -> Result<B, String>,
) -> Detector {
    let backend = Arc::new(new(&spec(name, params)).unwrap_or_else(|e| panic!("{name}: {e}")));
    let udp_backend = Arc::clone(&backend);
    Detector {
        name,
        protocols: vec![name],
        tcp: Box::new(move |bytes| backend.detect(&conn(), bytes).into()),
        udp: Box::new(move |bytes| udp_backend.can_handle_message(&conn(), bytes).into()),
    }
}
