//! pmmux plugin `postgres`: matches a PostgreSQL client by its first message (see [`message`]):
//! an `SSLRequest`, a `GSSENCRequest`, a `CancelRequest` or a plaintext protocol-3 `StartupMessage`,
//! optionally only for some users or databases. Detection only: matched connections are forwarded
//! to the backend's `target`.
//!
//! Params (both optional; one string or a list; exact, case-sensitive comparison):
//!
//! ```toml
//! [backend.params]
//! user = ["alice", "bob"]
//! database = "shop"
//! ```
//!
//! `database` is compared with the database the server will use: the `database` parameter, or the
//! user name when the client sent none (as PostgreSQL does).
//!
//! **Encrypted connections carry no user.** With `sslmode=require` (or `prefer`, libpq's default)
//! the client's first message is an 8-byte `SSLRequest`; the user and database follow inside TLS,
//! out of sight. A backend with `user` or `database` therefore never matches `SSLRequest`,
//! `GSSENCRequest` or `CancelRequest`: route those with a backend without params (usually of lower
//! priority than the filtered ones).
//!
//! Health check: an `SSLRequest`; healthy when the server answers `S` or `N` (one byte, as
//! every PostgreSQL server since 7.2 does), see [`health_verdict`].
//!
//! Properties on a match: `postgres.request` (`ssl`, `gssenc`, `cancel` or `startup`), and for a
//! startup `postgres.user` and, when sent, `postgres.database`.

pub mod message;

use pmmux_plugin_api::{
    export_plugin, Backend, BackendSpec, ConnInfo, Detection, HealthProbe, HealthTransport, HealthVerdict, Property,
};
use serde::Deserialize;

use message::{parse, Parse, Request};

/// The backend's `[backend.params]`, as written by the user.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// User names to match.
    #[serde(default, deserialize_with = "pmmux_plugin_api::params::string_or_list")]
    pub user: Option<Vec<String>>,
    /// Database names to match.
    #[serde(default, deserialize_with = "pmmux_plugin_api::params::string_or_list")]
    pub database: Option<Vec<String>>,
}

/// Refuses an empty list or an empty name.
fn validate(name: &str, list: &Option<Vec<String>>) -> Result<(), String> {
    match list {
        Some(list) if list.is_empty() => Err(format!("`{name}` is an empty list: omit it to match any {name}")),
        Some(list) if list.iter().any(String::is_empty) => Err(format!("`{name}` holds an empty name")),
        _ => Ok(()),
    }
}

/// A `postgres` backend.
#[derive(Debug, Clone, Default)]
pub struct Postgres {
    users: Option<Vec<String>>,
    databases: Option<Vec<String>>,
}

impl Postgres {
    /// Builds the backend from its params; the error tells the user what is wrong with them.
    pub fn new(spec: &BackendSpec<'_>) -> Result<Self, String> {
        Self::from_params(spec.params()?)
    }

    /// Builds the backend from already parsed params.
    pub fn from_params(params: Params) -> Result<Self, String> {
        validate("user", &params.user)?;
        validate("database", &params.database)?;
        Ok(Postgres {
            users: params.user,
            databases: params.database,
        })
    }

    /// Detection over the bytes previewed so far.
    pub fn detect_stream(&self, preview: &[u8]) -> Detection {
        match parse(preview) {
            Parse::Incomplete => Detection::NeedMore,
            Parse::Invalid(_) => Detection::NoMatch,
            Parse::Complete(request) if self.accepts(&request) => Detection::Match(properties(&request)),
            Parse::Complete(_) => Detection::NoMatch,
        }
    }

    fn accepts(&self, request: &Request) -> bool {
        let filtered = self.users.is_some() || self.databases.is_some();
        match request {
            Request::Startup(startup) => {
                let database = startup.database.as_deref().unwrap_or(&startup.user);
                self.users.as_ref().is_none_or(|u| u.contains(&startup.user))
                    && self.databases.as_ref().is_none_or(|d| d.iter().any(|d| d == database))
            }
            _ => !filtered,
        }
    }
}

/// The `postgres.*` properties of a first message.
pub fn properties(request: &Request) -> Vec<Property> {
    let mut props = vec![Property::new("postgres.request", request.name())];
    if let Request::Startup(startup) = request {
        props.push(Property::new("postgres.user", startup.user.as_str()));
        if let Some(database) = &startup.database {
            props.push(Property::new("postgres.database", database.as_str()));
        }
    }
    props
}

impl Backend for Postgres {
    fn detect(&self, _conn: &ConnInfo<'_>, preview: &[u8]) -> Detection {
        self.detect_stream(preview)
    }

    fn health_probe(&self) -> Option<HealthProbe> {
        let mut send = 8u32.to_be_bytes().to_vec();
        send.extend_from_slice(&message::SSL_REQUEST.to_be_bytes());
        Some(HealthProbe {
            transport: HealthTransport::Tcp,
            send,
        })
    }

    fn health_verdict(&self, response: &[u8], closed: bool) -> HealthVerdict {
        health_verdict(response, closed)
    }
}

/// Judges a server's answer to an `SSLRequest`: `S` (will do TLS) or `N` (will not) is a
/// PostgreSQL server.
pub fn health_verdict(response: &[u8], closed: bool) -> HealthVerdict {
    match response.first() {
        Some(b'S' | b'N') => HealthVerdict::Healthy,
        Some(other) => HealthVerdict::Unhealthy(format!("answered byte 0x{other:02x} to SSLRequest")),
        None if closed => HealthVerdict::Unhealthy("closed without answering SSLRequest".into()),
        None => HealthVerdict::NeedMore,
    }
}

#[cfg(test)]
mod health_tests {
    use super::*;

    #[test]
    fn ssl_request_probe_and_verdicts() {
        let p = Postgres::from_params(Params::default()).expect("valid");
        let probe = p.health_probe().expect("probe");
        assert_eq!(probe.send.as_slice(), &[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
        assert_eq!(health_verdict(b"N", false), HealthVerdict::Healthy);
        assert_eq!(health_verdict(b"S", false), HealthVerdict::Healthy);
        assert_eq!(health_verdict(b"", false), HealthVerdict::NeedMore);
        assert!(matches!(health_verdict(b"", true), HealthVerdict::Unhealthy(_)));
        assert!(matches!(
            health_verdict(b"HTTP/1.1 400", false),
            HealthVerdict::Unhealthy(_)
        ));
    }
}

export_plugin! {
    name: "postgres",
    version: env!("CARGO_PKG_VERSION"),
    protocols: { "postgres" => Postgres::new },
}
