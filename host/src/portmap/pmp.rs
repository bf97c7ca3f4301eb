//! NAT-PMP (RFC 6886) and PCP (RFC 6887) toward one gateway. Mappings are made, renewed and
//! removed with crab_nat; the two small requests it does not offer in the form needed here are
//! written out: NAT-PMP's external-address request with its epoch (crab_nat returns the address
//! only) and PCP's ANNOUNCE (its epoch), which tell a restarted gateway by its epoch going back.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU16;
use std::time::Duration;

use crab_nat::{natpmp, pcp, InternetProtocol, PortMapping, PortMappingOptions, PortMappingType, TimeoutConfig};
use tokio::net::UdpSocket;

use super::engine::{Failure, Granted, ProbeReport, Want};
use super::{Protocol, Transport};

/// The gateway's NAT-PMP / PCP port.
const GATEWAY_PORT: u16 = 5351;
/// Per-request timing: a gateway on the local network answers in milliseconds; one that does not
/// speak the protocol answers with ICMP port unreachable, which fails at once.
const TIMEOUT: TimeoutConfig = TimeoutConfig {
    initial_timeout: Duration::from_millis(250),
    max_retries: 2,
    max_retry_timeout: Some(Duration::from_secs(1)),
};

/// A NAT-PMP or PCP client for one gateway and the mappings it made.
#[derive(Debug)]
pub(crate) struct PmpClient {
    protocol: Protocol,
    gateway: IpAddr,
    client: IpAddr,
    external_ip: Option<IpAddr>,
    mappings: HashMap<(Transport, u16), PortMapping>,
}

fn proto(t: Transport) -> InternetProtocol {
    match t {
        Transport::Tcp => InternetProtocol::Tcp,
        Transport::Udp => InternetProtocol::Udp,
    }
}

fn lost(message: String) -> Failure {
    Failure {
        message,
        gateway_lost: true,
    }
}

fn natpmp_failure(e: natpmp::Failure) -> Failure {
    let gateway_lost = matches!(e, natpmp::Failure::Socket(_) | natpmp::Failure::Timeout);
    Failure {
        message: format!("NAT-PMP: {e}"),
        gateway_lost,
    }
}

fn pcp_failure(e: pcp::Failure) -> Failure {
    let gateway_lost = matches!(e, pcp::Failure::Socket(_) | pcp::Failure::Timeout);
    Failure {
        message: format!("PCP: {e}"),
        gateway_lost,
    }
}

fn mapping_failure(e: crab_nat::MappingFailure) -> Failure {
    match e {
        crab_nat::MappingFailure::NatPmp(e) => natpmp_failure(e),
        crab_nat::MappingFailure::Pcp(e) => pcp_failure(e),
    }
}

/// Sends `request` to the gateway and returns the first answer of at least `min_len` bytes whose
/// second byte is `opcode | 0x80`, retrying with doubling waits.
async fn exchange(gateway: IpAddr, request: &[u8], opcode: u8, min_len: usize, what: &str) -> Result<Vec<u8>, Failure> {
    let bind: std::net::SocketAddr = match gateway {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(bind).await.map_err(|e| lost(format!("{what}: {e}")))?;
    socket
        .connect((gateway, GATEWAY_PORT))
        .await
        .map_err(|e| lost(format!("{what}: {e}")))?;
    let mut wait = TIMEOUT.initial_timeout;
    let mut buf = [0u8; 1100];
    for _ in 0..=TIMEOUT.max_retries {
        socket.send(request).await.map_err(|e| lost(format!("{what}: {e}")))?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                Err(_) => break,
                Ok(Err(e)) => return Err(lost(format!("{what}: no answer from {gateway}: {e}"))),
                Ok(Ok(n)) if n >= min_len && buf[1] == opcode | 0x80 => return Ok(buf[..n].to_vec()),
                Ok(Ok(_)) => continue,
            }
        }
        wait = (wait * 2).min(TIMEOUT.max_retry_timeout.unwrap_or(wait * 2));
    }
    Err(lost(format!("{what}: {gateway} did not answer")))
}

/// NAT-PMP external address request: the gateway's external address and its epoch.
pub(crate) async fn external_address(gateway: IpAddr) -> Result<(Ipv4Addr, u32), Failure> {
    let r = exchange(gateway, &[0, 0], 0, 12, "NAT-PMP").await?;
    if r[0] != 0 {
        return Err(lost(format!("NAT-PMP: {gateway} answered with version {}", r[0])));
    }
    let code = u16::from_be_bytes([r[2], r[3]]);
    if code != 0 {
        return Err(Failure {
            message: format!("NAT-PMP: external address request refused (result code {code})"),
            gateway_lost: false,
        });
    }
    let epoch = u32::from_be_bytes([r[4], r[5], r[6], r[7]]);
    Ok((Ipv4Addr::new(r[8], r[9], r[10], r[11]), epoch))
}

/// PCP ANNOUNCE: the gateway's epoch.
pub(crate) async fn announce(gateway: IpAddr, client: IpAddr) -> Result<u32, Failure> {
    let mut req = [0u8; 24];
    req[0] = 2;
    let client6 = match client {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    req[8..24].copy_from_slice(&client6.octets());
    let r = exchange(gateway, &req, 0, 24, "PCP").await?;
    if r[0] != 2 {
        return Err(lost(format!("PCP: {gateway} answered with version {}", r[0])));
    }
    if r[3] != 0 {
        return Err(Failure {
            message: format!("PCP: ANNOUNCE refused (result code {})", r[3]),
            gateway_lost: false,
        });
    }
    Ok(u32::from_be_bytes([r[8], r[9], r[10], r[11]]))
}

impl PmpClient {
    /// Checks that `gateway` speaks `protocol` and returns a client for it with the external
    /// address (NAT-PMP) and the epoch.
    pub async fn connect(
        protocol: Protocol,
        gateway: IpAddr,
        client: IpAddr,
    ) -> Result<(PmpClient, Option<IpAddr>, u32), Failure> {
        let (external_ip, epoch) = match protocol {
            Protocol::Pcp => (None, announce(gateway, client).await?),
            _ => {
                let (ip, epoch) = external_address(gateway).await?;
                (Some(IpAddr::V4(ip)), epoch)
            }
        };
        let c = PmpClient {
            protocol,
            gateway,
            client,
            external_ip,
            mappings: HashMap::new(),
        };
        Ok((c, external_ip, epoch))
    }

    /// Makes or renews a mapping.
    pub async fn map(&mut self, want: &Want, public_port: Option<u16>, lifetime_s: u32) -> Result<Granted, Failure> {
        let internal = NonZeroU16::new(want.internal_port).ok_or_else(|| Failure {
            message: "internal port 0".into(),
            gateway_lost: false,
        })?;
        let key = (want.transport, want.internal_port);
        let options = PortMappingOptions {
            external_port: public_port.and_then(NonZeroU16::new),
            lifetime_seconds: Some(lifetime_s),
            timeout_config: Some(TIMEOUT),
        };
        let client = want.internal_ip.unwrap_or(self.client);
        let mapping = match self.mappings.remove(&key) {
            Some(mut m) => m.renew().await.map(|()| m).map_err(mapping_failure)?,
            None => match self.protocol {
                Protocol::Pcp => pcp::port_mapping(
                    pcp::BaseMapRequest::new(self.gateway.into(), client, proto(want.transport), internal),
                    None,
                    None,
                    options,
                )
                .await
                .map_err(pcp_failure)?,
                _ => natpmp::port_mapping(self.gateway.into(), proto(want.transport), internal, options)
                    .await
                    .map_err(natpmp_failure)?,
            },
        };
        let external_ip = match mapping.mapping_type() {
            PortMappingType::Pcp { external_ip, .. } => Some(external_ip),
            PortMappingType::NatPmp => self.external_ip,
        };
        let granted = Granted {
            public_port: mapping.external_port().get(),
            lifetime_s: mapping.lifetime(),
            external_ip,
            epoch: Some(mapping.gateway_epoch()),
        };
        self.mappings.insert(key, mapping);
        Ok(granted)
    }

    /// Removes a mapping.
    pub async fn unmap(&mut self, want: &Want) -> Result<(), Failure> {
        match self.mappings.remove(&(want.transport, want.internal_port)) {
            Some(m) => m.try_drop().await.map_err(|(e, _)| mapping_failure(e)),
            None if self.protocol == Protocol::Pmp => natpmp::try_drop_mapping(
                self.gateway.into(),
                proto(want.transport),
                NonZeroU16::new(want.internal_port),
                Some(TIMEOUT),
            )
            .await
            .map_err(natpmp_failure),
            None => Ok(()),
        }
    }

    /// The gateway's epoch (and, for NAT-PMP, external address).
    pub async fn probe(&mut self) -> Result<ProbeReport, Failure> {
        let (external_ip, epoch) = match self.protocol {
            Protocol::Pcp => (None, announce(self.gateway, self.client).await?),
            _ => {
                let (ip, epoch) = external_address(self.gateway).await?;
                self.external_ip = Some(IpAddr::V4(ip));
                (Some(IpAddr::V4(ip)), epoch)
            }
        };
        Ok(ProbeReport {
            external_ip,
            epoch: Some(epoch),
            present: None,
        })
    }

    /// Forgets the mappings made (the gateway lost them): the next request for each makes it anew.
    pub fn forget(&mut self, transport: Transport, internal_port: u16) {
        self.mappings.remove(&(transport, internal_port));
    }
}
