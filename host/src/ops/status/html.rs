//! The status page (`GET /` and `/status.html`): the [`Status`] snapshot as one small HTML page,
//! every value escaped, no script, no external resource.

use std::fmt::Write;

use super::Status;

/// Escapes text for HTML element content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn table(out: &mut String, title: &str, head: &[&str], rows: Vec<Vec<String>>) {
    let _ = write!(out, "<h2>{}</h2>\n<table>\n<tr>", escape(title));
    for h in head {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr>\n");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{}</td>", escape(&cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

fn opt(v: Option<usize>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// The page.
pub(crate) fn render(s: &Status) -> String {
    let mut out = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>pmmux status</title>\n\
         <style>body{font-family:sans-serif;margin:1em 2em}table{border-collapse:collapse}\
         td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}th{background:#eee}</style>\n\
         </head><body>\n<h1>pmmux</h1>\n",
    );
    let _ = writeln!(
        out,
        "<p>pid {} &middot; up {} s &middot; {} plugin version(s) mapped, {} old &middot; \
         connections {} (max {}) &middot; previewing {} (max {}) &middot; \
         <a href=\"/status\">JSON</a> &middot; <a href=\"/metrics\">metrics</a></p>",
        s.pid,
        s.uptime_s,
        s.mapped_versions,
        s.old_versions_mapped,
        s.limits.connections,
        opt(s.limits.max_connections),
        s.limits.previews,
        opt(s.limits.max_previews),
    );
    table(
        &mut out,
        "Backends",
        &[
            "name",
            "protocol",
            "plugin",
            "tier",
            "target",
            "live",
            "routed",
            "plugin errors",
            "enabled",
            "health",
        ],
        s.backends
            .iter()
            .map(|b| {
                vec![
                    b.name.clone(),
                    b.protocol.clone(),
                    b.plugin.clone(),
                    b.priority.clone(),
                    b.target.clone().unwrap_or_else(|| "-".into()),
                    b.live.to_string(),
                    b.routed.to_string(),
                    b.plugin_errors.to_string(),
                    if b.enabled { "yes" } else { "DISABLED" }.into(),
                    match &b.health.last_failure {
                        Some(why) if b.health.state == "down" => format!("down: {why}"),
                        _ => b.health.state.clone(),
                    },
                ]
            })
            .collect(),
    );
    table(
        &mut out,
        "Listeners",
        &[
            "name",
            "transport",
            "address",
            "connections",
            "max_connections",
            "max_connections_per_ip",
            "client IPs",
        ],
        s.listeners
            .iter()
            .map(|l| {
                vec![
                    l.name.clone(),
                    l.transport.clone(),
                    l.address.clone(),
                    l.connections.to_string(),
                    opt(l.max_connections),
                    opt(l.max_connections_per_ip),
                    l.client_ips.to_string(),
                ]
            })
            .collect(),
    );
    if !s.udp.is_empty() {
        table(
            &mut out,
            "UDP listeners",
            &[
                "name",
                "address",
                "flows",
                "datagrams",
                "unmatched",
                "rejected",
                "expired",
            ],
            s.udp
                .iter()
                .map(|u| {
                    vec![
                        u.name.clone(),
                        u.address.clone(),
                        u.flows.to_string(),
                        u.datagrams.to_string(),
                        u.unmatched.to_string(),
                        u.rejected.to_string(),
                        u.expired.to_string(),
                    ]
                })
                .collect(),
        );
    }
    table(
        &mut out,
        "Plugins",
        &["name", "version", "file", "protocols", "plugin-api", "ABI revision"],
        s.plugins
            .iter()
            .map(|p| {
                vec![
                    p.name.clone(),
                    p.version.clone(),
                    p.file.clone(),
                    p.protocols.join(", "),
                    p.plugin_api.clone(),
                    p.abi_revision.to_string(),
                ]
            })
            .collect(),
    );
    let pm = &s.port_mapping;
    if pm.enabled && !pm.mappings.is_empty() {
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        table(
            &mut out,
            "Port mapping",
            &["protocol", "gateway", "external address", "last error"],
            vec![vec![
                dash(&pm.protocol),
                dash(&pm.gateway),
                dash(&pm.external_address),
                dash(&pm.last_error),
            ]],
        );
        table(
            &mut out,
            "Mappings",
            &[
                "listener",
                "transport",
                "local port",
                "public port",
                "asked",
                "state",
                "lifetime left (s)",
                "renewals",
                "last error",
            ],
            pm.mappings
                .iter()
                .map(|m| {
                    vec![
                        m.listener.clone(),
                        m.transport.clone(),
                        m.internal_port.to_string(),
                        m.public_port.map_or("-".into(), |p| p.to_string()),
                        m.requested_public_port.clone(),
                        m.state.clone(),
                        m.lifetime_left_s.map_or("-".into(), |l| l.to_string()),
                        m.renewals.to_string(),
                        dash(&m.last_error),
                    ]
                })
                .collect(),
        );
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::status::{BackendStatus, LimitsStatus};

    #[test]
    fn every_value_is_escaped() {
        let status = Status {
            pid: 1,
            uptime_s: 2,
            plugins: vec![],
            mapped_versions: 0,
            old_versions_mapped: 0,
            unmapped_versions: 0,
            kept_mapped_versions: 0,
            listeners: vec![],
            udp: vec![],
            upgrade: Default::default(),
            backends: vec![BackendStatus {
                name: "<script>alert('x')</script>".into(),
                protocol: "a&b".into(),
                plugin: "builtin".into(),
                priority: "normal".into(),
                target: Some("\"q\"".into()),
                live: 3,
                routed: 4,
                plugin_errors: 0,
                enabled: true,
                health: crate::routing::health::HealthReport {
                    state: "down".into(),
                    last_failure: Some("<b>refused</b>".into()),
                    ..Default::default()
                },
            }],
            limits: LimitsStatus::default(),
            port_mapping: Default::default(),
        };
        let page = render(&status);
        assert!(!page.contains("<script>"));
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(page.contains("<td>a&amp;b</td>"));
        assert!(page.contains("<td>&quot;q&quot;</td>"));
        assert!(page.contains("<td>down: &lt;b&gt;refused&lt;/b&gt;</td>"));
    }
}
