//! UPnP IGD (WANIPConnection) through igd-next's blocking client, each call run on the blocking
//! pool so the runtime never waits on the gateway's HTTP.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use igd_next::{AddAnyPortError, AddPortError, PortMappingProtocol, RequestError, SearchError, SearchOptions};

use super::engine::{Failure, Granted, ProbeReport, Want};
use super::Transport;

/// How long an SSDP search waits for a gateway to answer.
const SEARCH_TIMEOUT: Duration = Duration::from_secs(3);
/// Most mappings read from the gateway per probe (a gateway's table is small; this bounds a
/// gateway that never says "no more").
const MAX_LISTED: u32 = 256;
/// The description pmmux gives its mappings.
pub(crate) const DESCRIPTION: &str = "pmmux";

/// A UPnP IGD gateway found by SSDP.
#[derive(Debug, Clone)]
pub(crate) struct UpnpClient {
    gateway: igd_next::Gateway,
    local: IpAddr,
}

fn proto(t: Transport) -> PortMappingProtocol {
    match t {
        Transport::Tcp => PortMappingProtocol::TCP,
        Transport::Udp => PortMappingProtocol::UDP,
    }
}

/// An HTTP or socket failure means the gateway is gone (or moved); a UPnP error code is a refusal.
fn request_failure(what: &str, e: &RequestError) -> Failure {
    let gateway_lost = !matches!(
        e,
        RequestError::ErrorCode(..) | RequestError::UnsupportedAction(_) | RequestError::InvalidResponse(_)
    );
    Failure {
        message: format!("UPnP {what}: {e}"),
        gateway_lost,
    }
}

fn refused(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure {
        message: format!("UPnP {what}: {e}"),
        gateway_lost: false,
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Failure> + Send + 'static) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(Failure {
            message: format!("UPnP request task failed: {e}"),
            gateway_lost: true,
        })
    })
}

impl UpnpClient {
    /// Searches for an IGD from `local` (answers from another address than `gateway`, when given,
    /// are refused) and asks its external address.
    pub async fn discover(local: IpAddr, gateway: Option<IpAddr>) -> Result<(UpnpClient, Option<IpAddr>), Failure> {
        blocking(move || {
            let options = SearchOptions {
                bind_addr: SocketAddr::new(local, 0),
                timeout: Some(SEARCH_TIMEOUT),
                single_search_timeout: Some(SEARCH_TIMEOUT),
                ..SearchOptions::default()
            };
            let found = igd_next::search_gateway(options).map_err(|e| Failure {
                message: match e {
                    SearchError::NoResponseWithinTimeout => {
                        format!(
                            "UPnP: no gateway answered the SSDP search within {}s",
                            SEARCH_TIMEOUT.as_secs()
                        )
                    }
                    e => format!("UPnP search: {e}"),
                },
                gateway_lost: true,
            })?;
            if let Some(g) = gateway.filter(|g| *g != found.addr.ip()) {
                return Err(Failure {
                    message: format!(
                        "UPnP: the gateway that answered is {}, not the configured {g}",
                        found.addr.ip()
                    ),
                    gateway_lost: true,
                });
            }
            let external = found.get_external_ip().ok();
            Ok((UpnpClient { gateway: found, local }, external))
        })
        .await
    }

    /// The gateway's address.
    pub fn address(&self) -> IpAddr {
        self.gateway.addr.ip()
    }

    /// Makes or renews a mapping (UPnP's AddPortMapping renews an identical one).
    pub async fn map(&self, want: &Want, public_port: Option<u16>, lifetime_s: u32) -> Result<Granted, Failure> {
        let (gw, local) = (self.gateway.clone(), want.internal_ip.unwrap_or(self.local));
        let (transport, internal) = (want.transport, SocketAddr::new(local, want.internal_port));
        blocking(move || {
            let p = proto(transport);
            let (port, lifetime_s) = match public_port {
                Some(port) => match gw.add_port(p, port, internal, lifetime_s, DESCRIPTION) {
                    Ok(()) => (port, lifetime_s),
                    Err(AddPortError::OnlyPermanentLeasesSupported) => {
                        gw.add_port(p, port, internal, 0, DESCRIPTION)
                            .map_err(|e| add_port_failure(&e))?;
                        (port, 0)
                    }
                    Err(e) => return Err(add_port_failure(&e)),
                },
                None => match gw.add_any_port(p, internal, lifetime_s, DESCRIPTION) {
                    Ok(port) => (port, lifetime_s),
                    Err(AddAnyPortError::OnlyPermanentLeasesSupported) => {
                        let port = gw
                            .add_any_port(p, internal, 0, DESCRIPTION)
                            .map_err(|e| add_any_port_failure(&e))?;
                        (port, 0)
                    }
                    Err(e) => return Err(add_any_port_failure(&e)),
                },
            };
            Ok(Granted {
                public_port: port,
                lifetime_s,
                external_ip: None,
                epoch: None,
            })
        })
        .await
    }

    /// Removes a mapping.
    pub async fn unmap(&self, want: &Want, public_port: u16) -> Result<(), Failure> {
        let gw = self.gateway.clone();
        let transport = want.transport;
        blocking(move || {
            gw.remove_port(proto(transport), public_port).map_err(|e| match e {
                igd_next::RemovePortError::RequestError(r) => request_failure("DeletePortMapping", &r),
                e => refused("DeletePortMapping", e),
            })
        })
        .await
    }

    /// The external address and the gateway's mappings to this host.
    pub async fn probe(&self) -> Result<ProbeReport, Failure> {
        let gw = self.gateway.clone();
        let local = self.local.to_string();
        blocking(move || {
            let external_ip = gw.get_external_ip().map_err(|e| match e {
                igd_next::GetExternalIpError::RequestError(r) => request_failure("GetExternalIPAddress", &r),
                e => refused("GetExternalIPAddress", e),
            })?;
            let mut present = Vec::new();
            for index in 0..MAX_LISTED {
                match gw.get_generic_port_mapping_entry(index) {
                    Ok(entry) => {
                        if entry.internal_client == local {
                            let t = match entry.protocol {
                                PortMappingProtocol::TCP => Transport::Tcp,
                                PortMappingProtocol::UDP => Transport::Udp,
                            };
                            present.push((t, entry.external_port, entry.internal_port));
                        }
                    }
                    Err(igd_next::GetGenericPortMappingEntryError::RequestError(r)) => {
                        return Err(request_failure("GetGenericPortMappingEntry", &r))
                    }
                    // SpecifiedArrayIndexInvalid: the end of the table.
                    Err(_) => break,
                }
            }
            Ok(ProbeReport {
                external_ip: Some(external_ip),
                epoch: None,
                present: Some(present),
            })
        })
        .await
    }
}

fn add_port_failure(e: &AddPortError) -> Failure {
    match e {
        AddPortError::RequestError(r) => request_failure("AddPortMapping", r),
        e => refused("AddPortMapping", e),
    }
}

fn add_any_port_failure(e: &AddAnyPortError) -> Failure {
    match e {
        AddAnyPortError::RequestError(r) => request_failure("AddAnyPortMapping", r),
        e => refused("AddAnyPortMapping", e),
    }
}
