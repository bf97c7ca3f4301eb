//! Port mapping in `/metrics` (Prometheus text format), in `pmmux status` and on the HTML page.
//! Labels are listener names from the configuration and `tcp`/`udp`, so label sets stay bounded.

use std::fmt::Write;

use super::PortMapStatus;

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Appends the port-mapping families (nothing when no listener has a `public_port`).
pub(crate) fn metrics(status: &PortMapStatus, out: &mut String) {
    if !status.enabled || status.mappings.is_empty() {
        return;
    }
    family(
        out,
        "pmmux_port_mapping_gateway_info",
        "gauge",
        "1 once a gateway answered: its protocol, address and external address.",
    );
    let _ = writeln!(
        out,
        "pmmux_port_mapping_gateway_info{{protocol=\"{}\",gateway=\"{}\",external_address=\"{}\"}} {}",
        escape_label(status.protocol.as_deref().unwrap_or("")),
        escape_label(status.gateway.as_deref().unwrap_or("")),
        escape_label(status.external_address.as_deref().unwrap_or("")),
        u8::from(status.gateway.is_some())
    );
    family(
        out,
        "pmmux_port_mapping_discovery_failures_total",
        "counter",
        "Gateway discoveries that found no gateway.",
    );
    let _ = writeln!(
        out,
        "pmmux_port_mapping_discovery_failures_total {}",
        status.discovery_failures
    );
    type Field = fn(&super::MappingStatus) -> Option<u64>;
    let families: [(&str, &str, &str, Field); 5] = [
        (
            "pmmux_port_mapping_active",
            "gauge",
            "1 while the gateway holds the mapping.",
            |m| Some(u64::from(m.state == "active")),
        ),
        (
            "pmmux_port_mapping_public_port",
            "gauge",
            "The public port the gateway granted.",
            |m| m.public_port.map(u64::from),
        ),
        (
            "pmmux_port_mapping_lifetime_remaining_seconds",
            "gauge",
            "Seconds until the mapping expires unless renewed.",
            |m| m.lifetime_left_s,
        ),
        (
            "pmmux_port_mapping_renewals_total",
            "counter",
            "Renewals of the mapping.",
            |m| Some(m.renewals),
        ),
        (
            "pmmux_port_mapping_failures_total",
            "counter",
            "Failed requests for the mapping.",
            |m| Some(m.failures),
        ),
    ];
    for (name, kind, help, field) in families {
        family(out, name, kind, help);
        for m in &status.mappings {
            if let Some(v) = field(m) {
                let _ = writeln!(
                    out,
                    "{name}{{listener=\"{}\",transport=\"{}\"}} {v}",
                    escape_label(&m.listener),
                    m.transport
                );
            }
        }
    }
}

/// The `port mapping:` section of `pmmux status`.
pub(crate) fn text(status: &PortMapStatus) -> String {
    if !status.enabled || status.mappings.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "\nport mapping: {} gateway {} external address {}\n",
        status.protocol.as_deref().unwrap_or("-"),
        status.gateway.as_deref().unwrap_or("not found"),
        status.external_address.as_deref().unwrap_or("unknown"),
    );
    if let Some(e) = &status.last_error {
        let _ = writeln!(out, "  last error: {e}");
    }
    for m in &status.mappings {
        let _ = write!(
            out,
            "  {:<24} {} {} -> public {} (asked {})  {}",
            m.listener,
            m.transport,
            m.internal_port,
            m.public_port.map_or("-".to_owned(), |p| p.to_string()),
            m.requested_public_port,
            m.state
        );
        if let Some(left) = m.lifetime_left_s {
            let _ = write!(out, "  lifetime left {left}s");
        }
        let _ = write!(out, "  renewals {}", m.renewals);
        if let Some(e) = &m.last_error {
            let _ = write!(out, "  error: {e}");
        }
        out.push('\n');
    }
    out
}
