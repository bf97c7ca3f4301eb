//! The port mapper's I/O: one task on the runtime that runs the [`Engine`], carries out the one
//! action it asks for at a time against the gateway (discovery, map, unmap, probe), logs what
//! happened, and sleeps until the engine's next deadline or a new set of wanted mappings.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::config::{PortMappingConfig, ProtocolChoice};
use super::discover;
use super::engine::{Action, Engine, Event, Failure, GatewayInfo, Timing, Want};
use super::pmp::PmpClient;
use super::upnp::UpnpClient;
use super::{PortMapStatus, Protocol, PublicPort, Transport};

enum Command {
    Wanted(Vec<Want>),
    Shutdown(oneshot::Sender<()>),
}

/// Handle to the port-mapping task.
#[derive(Debug, Clone)]
pub struct PortMapper {
    tx: mpsc::UnboundedSender<Command>,
    engine: Arc<Mutex<Engine>>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Wanted(_) => "Wanted",
            Command::Shutdown(_) => "Shutdown",
        })
    }
}

/// One listener socket that may want a mapping.
#[derive(Debug, Clone)]
pub struct Bound {
    /// Listener name.
    pub listener: String,
    /// The bound (or, with `listen = false`, configured) local address.
    pub address: std::net::SocketAddr,
    /// TCP or UDP.
    pub transport: Transport,
    /// The listener's `public_port`.
    pub public: PublicPort,
}

/// The mappings a set of listener sockets asks for.
pub(crate) fn wanted(bound: &[Bound]) -> Vec<Want> {
    bound
        .iter()
        .filter(|b| b.address.port() != 0)
        .map(|b| Want {
            listener: b.listener.clone(),
            transport: b.transport,
            internal_port: b.address.port(),
            internal_ip: Some(b.address.ip()).filter(|ip| !ip.is_unspecified() && !ip.is_loopback()),
            public: b.public,
        })
        .collect()
}

impl PortMapper {
    /// Starts the task (inside the runtime). It does nothing until mappings are wanted.
    pub fn start(config: PortMappingConfig) -> PortMapper {
        let timing = Timing {
            lifetime_s: config.lifetime_s,
            renewal_lead_s: config.renewal_lead_s,
        };
        let engine = Arc::new(Mutex::new(Engine::new(timing, Instant::now())));
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(config, Arc::clone(&engine), rx));
        PortMapper { tx, engine }
    }

    /// Replaces the wanted mappings with those of these listener sockets.
    pub fn set_bound(&self, bound: &[Bound]) {
        let _ = self.tx.send(Command::Wanted(wanted(bound)));
    }

    /// Removes every mapping from the gateway, waiting at most `within`.
    pub async fn shutdown(&self, within: Duration) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Command::Shutdown(done)).is_ok() && tokio::time::timeout(within, wait).await.is_err() {
            tracing::warn!(
                within_ms = within.as_millis(),
                "port mapping: the gateway did not confirm every removal in time; the rest expire by their lifetime"
            );
        }
    }

    /// The mappings' status now.
    pub fn status(&self) -> PortMapStatus {
        lock(&self.engine).status(Instant::now())
    }
}

fn lock(engine: &Mutex<Engine>) -> MutexGuard<'_, Engine> {
    engine.lock().unwrap_or_else(|p| p.into_inner())
}

enum Client {
    Upnp(UpnpClient),
    Pmp(PmpClient),
}

async fn run(config: PortMappingConfig, engine: Arc<Mutex<Engine>>, mut rx: mpsc::UnboundedReceiver<Command>) {
    let mut client: Option<Client> = None;
    let mut shutdown: Option<oneshot::Sender<()>> = None;
    loop {
        loop {
            let action = lock(&engine).next_action(Instant::now());
            let Some(action) = action else { break };
            execute(action, &config, &engine, &mut client).await;
            // Commands that came in meanwhile apply before the next action.
            while let Ok(cmd) = rx.try_recv() {
                apply(cmd, &engine, &mut shutdown);
            }
        }
        if let Some(done) = shutdown.take() {
            if lock(&engine).is_idle() || client.is_none() {
                let _ = done.send(());
                return;
            }
            shutdown = Some(done);
        }
        let deadline = lock(&engine).next_deadline();
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(cmd) => apply(cmd, &engine, &mut shutdown),
                None => return,
            },
            () = sleep => {}
        }
    }
}

fn apply(cmd: Command, engine: &Mutex<Engine>, shutdown: &mut Option<oneshot::Sender<()>>) {
    let now = Instant::now();
    match cmd {
        Command::Wanted(w) => lock(engine).set_wanted(w, now),
        Command::Shutdown(done) => {
            lock(engine).shutdown(now);
            *shutdown = Some(done);
        }
    }
}

async fn execute(action: Action, config: &PortMappingConfig, engine: &Mutex<Engine>, client: &mut Option<Client>) {
    match action {
        Action::Discover => {
            let result = discover_gateway(config).await;
            let result = result.map(|(c, info)| {
                *client = Some(c);
                info
            });
            let event = lock(engine).on_discovered(result, Instant::now());
            log(&event);
        }
        Action::Map {
            want,
            public_port,
            lifetime_s,
            renewal,
        } => {
            let result = match client.as_mut() {
                Some(Client::Upnp(c)) => c.map(&want, public_port, lifetime_s).await,
                Some(Client::Pmp(c)) => {
                    if !renewal {
                        c.forget(want.transport, want.internal_port);
                    }
                    c.map(&want, public_port, lifetime_s).await
                }
                None => Err(no_client()),
            };
            if let (Ok(g), PublicPort::Fixed(asked)) = (&result, want.public) {
                if g.public_port != asked {
                    tracing::warn!(listener = %want.listener, transport = want.transport.label(), asked, granted = g.public_port,
                        "port mapping: the gateway gave another public port than the one asked for");
                }
            }
            let events = lock(engine).on_mapped(&want, renewal, result, Instant::now());
            events.iter().for_each(log);
        }
        Action::Unmap { want, public_port } => {
            let result = match client.as_mut() {
                Some(Client::Upnp(c)) => c.unmap(&want, public_port).await,
                Some(Client::Pmp(c)) => c.unmap(&want).await,
                None => Err(no_client()),
            };
            let event = lock(engine).on_unmapped(&want, public_port, result, Instant::now());
            log(&event);
        }
        Action::Probe => {
            let result = match client.as_mut() {
                Some(Client::Upnp(c)) => c.probe().await,
                Some(Client::Pmp(c)) => c.probe().await,
                None => Err(no_client()),
            };
            if let Err(e) = &result {
                tracing::warn!(error = %e.message, "port mapping: checking the gateway failed");
            }
            let events = lock(engine).on_probed(result, Instant::now());
            events.iter().for_each(log);
        }
    }
}

fn no_client() -> Failure {
    Failure {
        message: "no gateway".into(),
        gateway_lost: true,
    }
}

/// Tries the configured protocol, or PCP, NAT-PMP and UPnP in that order: the first two are one
/// UDP exchange each and fail at once (ICMP port unreachable) on a gateway that does not speak
/// them, while UPnP needs a multicast search and HTTP.
async fn discover_gateway(config: &PortMappingConfig) -> Result<(Client, GatewayInfo), Failure> {
    let order: &[Protocol] = match config.protocol {
        ProtocolChoice::Auto => &[Protocol::Pcp, Protocol::Pmp, Protocol::Upnp],
        ProtocolChoice::Upnp => &[Protocol::Upnp],
        ProtocolChoice::Pmp => &[Protocol::Pmp],
        ProtocolChoice::Pcp => &[Protocol::Pcp],
    };
    let route = discover::route(config.gateway, config.interface.as_deref());
    let mut why = Vec::new();
    for &protocol in order {
        let attempt = match (protocol, &route) {
            (Protocol::Upnp, _) => {
                let local = match &route {
                    Ok(r) => r.local,
                    Err(_) => config
                        .interface
                        .as_deref()
                        .and_then(discover::interface_ipv4)
                        .map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), IpAddr::V4),
                };
                UpnpClient::discover(local, config.gateway)
                    .await
                    .map(|(c, external_ip)| {
                        let info = GatewayInfo {
                            protocol,
                            address: c.address(),
                            external_ip,
                            epoch: None,
                        };
                        (Client::Upnp(c), info)
                    })
            }
            (_, Ok(r)) => PmpClient::connect(protocol, r.gateway, r.local)
                .await
                .map(|(c, external_ip, epoch)| {
                    let info = GatewayInfo {
                        protocol,
                        address: r.gateway,
                        external_ip,
                        epoch: Some(epoch),
                    };
                    (Client::Pmp(c), info)
                }),
            (_, Err(e)) => Err(Failure {
                message: format!("{}: {e}", protocol.label().to_uppercase()),
                gateway_lost: true,
            }),
        };
        match attempt {
            Ok(found) => return Ok(found),
            Err(f) => why.push(f.message),
        }
    }
    Err(Failure {
        message: why.join("; "),
        gateway_lost: true,
    })
}

fn key_label(key: &(String, Transport)) -> String {
    format!("{}/{}", key.0, key.1.label())
}

fn log(event: &Event) {
    match event {
        Event::GatewayFound(info) => tracing::info!(
            protocol = info.protocol.label(),
            gateway = %info.address,
            external_address = %info.external_ip.map(|a| a.to_string()).unwrap_or_else(|| "unknown".into()),
            "port mapping: gateway found"
        ),
        Event::GatewayMissing { message, first } => {
            if *first {
                tracing::warn!(error = %message, "port mapping: no gateway to map ports on; serving goes on, retrying with backoff")
            } else {
                tracing::debug!(error = %message, "port mapping: still no gateway")
            }
        }
        Event::Mapped {
            key,
            external,
            public_port,
            lifetime_s,
            renewal,
        } => {
            let external = external.map(|a| a.to_string()).unwrap_or_else(|| "?".into());
            if *renewal {
                tracing::debug!(mapping = %key_label(key), public = %format!("{external}:{public_port}"), lifetime_s, "port mapping renewed");
            } else {
                tracing::info!(mapping = %key_label(key), public = %format!("{external}:{public_port}"), lifetime_s, "port mapping made");
            }
        }
        Event::MapFailed {
            key,
            message,
            retry_in,
            first,
        } => {
            if *first {
                tracing::warn!(mapping = %key_label(key), error = %message, retry_in_s = retry_in.as_secs(), "port mapping failed; serving goes on");
            } else {
                tracing::debug!(mapping = %key_label(key), error = %message, retry_in_s = retry_in.as_secs(), "port mapping failed again");
            }
        }
        Event::Unmapped {
            key,
            public_port,
            error,
        } => match error {
            None => tracing::info!(mapping = %key_label(key), public_port, "port mapping removed"),
            Some(e) => {
                tracing::warn!(mapping = %key_label(key), public_port, error = %e, "port mapping: removing failed; it expires by its lifetime")
            }
        },
        Event::Forgotten { keys, why } => tracing::warn!(
            mappings = %keys.iter().map(key_label).collect::<Vec<_>>().join(", "),
            why,
            "port mapping: the gateway lost mappings; making them again"
        ),
        Event::ExternalAddressChanged { from, to } => tracing::info!(
            from = %from.map(|a| a.to_string()).unwrap_or_default(),
            to = %to,
            "port mapping: the external address changed"
        ),
    }
}
