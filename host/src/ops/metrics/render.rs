//! Renders every metric in the Prometheus text exposition format 0.0.4: one `# HELP` and one
//! `# TYPE` line per family, then its samples; label values escaped; histograms as cumulative
//! `_bucket` samples ending in `le="+Inf"`, then `_sum` and `_count`.

use std::fmt::{Display, Write};
use std::sync::atomic::Ordering;

use super::{ConnOutcome, DETECTION_BUCKETS};
use crate::ops::limits::LimitKind;
use crate::ops::status::StatusSource;

/// The `Content-Type` of the rendering.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The text format under construction.
#[derive(Default)]
struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

/// Escapes a label value: backslash, double quote and line feed.
pub(crate) fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A float as the format writes it (`+Inf`, `-Inf`, `NaN` spelled out).
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// Every metric of the process, read from `src`.
pub(crate) fn render(src: &StatusSource) -> String {
    let m = &src.metrics;
    let registry = src.registry.load_full();
    let (tcp, udp) = {
        let set = src.listeners.lock().unwrap_or_else(|p| p.into_inner());
        (set.tcp_ops(), set.udp_stats())
    };
    let mut o = Out::default();

    o.family(
        "pmmux_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch, in seconds.",
    );
    o.sample("pmmux_start_time_seconds", &[], float(m.start_time));

    o.family(
        "pmmux_connections_total",
        "counter",
        "TCP connections ended, by listener, backend (empty when none was chosen) and outcome.",
    );
    for (listener, _, metrics) in &tcp {
        for (backend, outcomes) in metrics.outcomes.sorted() {
            for outcome in ConnOutcome::ALL {
                let labels = [
                    ("listener", listener.as_str()),
                    ("backend", &*backend),
                    ("outcome", outcome.label()),
                ];
                o.sample("pmmux_connections_total", &labels, outcomes.get(outcome));
            }
        }
    }
    o.family(
        "pmmux_connections_active",
        "gauge",
        "TCP connections open now, by listener.",
    );
    for (listener, limits, _) in &tcp {
        o.sample(
            "pmmux_connections_active",
            &[("listener", listener)],
            limits.connections.count(),
        );
    }
    o.family(
        "pmmux_previews_active",
        "gauge",
        "TCP connections accepted and not yet routed (previewing) now.",
    );
    o.sample("pmmux_previews_active", &[], src.limits.previews.count());
    o.family(
        "pmmux_backend_connections_active",
        "gauge",
        "Connections (TCP) and flows (UDP) open now, by backend in routing.",
    );
    for b in &registry.backends {
        o.sample(
            "pmmux_backend_connections_active",
            &[("backend", b.name())],
            b.stats.live.load(Ordering::Relaxed),
        );
    }
    o.family(
        "pmmux_backend_up",
        "gauge",
        "1 when the backend takes new connections, 0 when health checks marked it down or repeated plugin errors disabled it.",
    );
    for b in &registry.backends {
        let up = b.is_enabled() && b.stats.health.is_up();
        o.sample("pmmux_backend_up", &[("backend", b.name())], u8::from(up));
    }
    o.family(
        "pmmux_bytes_total",
        "counter",
        "Bytes of ended TCP connections by backend; direction up is client to backend (with the previewed bytes), down is backend to client.",
    );
    for (backend, bytes) in m.bytes.sorted() {
        for (direction, v) in [("up", &bytes.up), ("down", &bytes.down)] {
            let labels = [("backend", &*backend), ("direction", direction)];
            o.sample("pmmux_bytes_total", &labels, v.load(Ordering::Relaxed));
        }
    }

    o.family(
        "pmmux_detection_seconds",
        "histogram",
        "Time from accept to the routing decision (match or no match) of TCP connections.",
    );
    let (buckets, sum, count) = m.detection.snapshot();
    for (i, c) in buckets.iter().enumerate() {
        let le = DETECTION_BUCKETS
            .get(i)
            .map_or_else(|| "+Inf".to_owned(), |b| float(*b));
        o.sample("pmmux_detection_seconds_bucket", &[("le", &le)], c);
    }
    o.sample("pmmux_detection_seconds_sum", &[], float(sum));
    o.sample("pmmux_detection_seconds_count", &[], count);
    o.family(
        "pmmux_preview_timeouts_total",
        "counter",
        "TCP clients that sent nothing within the probe timeout.",
    );
    o.sample(
        "pmmux_preview_timeouts_total",
        &[],
        m.preview_timeouts.load(Ordering::Relaxed),
    );

    o.family(
        "pmmux_plugin_errors_total",
        "counter",
        "Plugin errors (caught panics, failed hooks) by backend in routing and plugin.",
    );
    for b in &registry.backends {
        let plugin = b.plugin_label();
        o.sample(
            "pmmux_plugin_errors_total",
            &[("backend", b.name()), ("plugin", &plugin)],
            b.stats.plugin_errors.load(Ordering::Relaxed),
        );
    }
    o.family(
        "pmmux_plugin_info",
        "gauge",
        "Plugins in routing now (value 1), with version and file.",
    );
    for p in &registry.plugins {
        let file = p.file.display().to_string();
        let labels = [("plugin", p.name.as_str()), ("version", &p.version), ("file", &file)];
        o.sample("pmmux_plugin_info", &labels, 1);
    }
    o.family(
        "pmmux_plugin_versions_mapped",
        "gauge",
        "Library versions of each plugin mapped into the process (the current one and old ones still used by connections or flows; unmapped once drained).",
    );
    for (plugin, n) in m.versions_mapped() {
        o.sample("pmmux_plugin_versions_mapped", &[("plugin", &plugin)], n);
    }
    o.family(
        "pmmux_plugin_libraries_mapped",
        "gauge",
        "Plugin libraries mapped into the process now, of every plugin.",
    );
    o.sample(
        "pmmux_plugin_libraries_mapped",
        &[],
        src.plugins.mapped.load(Ordering::Relaxed),
    );
    o.family(
        "pmmux_plugin_libraries_unmapped_total",
        "counter",
        "Plugin libraries closed and unmapped since start (old versions drained, files refused after mapping).",
    );
    o.sample(
        "pmmux_plugin_libraries_unmapped_total",
        &[],
        src.plugins.unmapped.load(Ordering::Relaxed),
    );
    o.family(
        "pmmux_plugin_libraries_kept_mapped",
        "gauge",
        "Plugin libraries closed but kept mapped by glibc because they registered thread-local destructors.",
    );
    o.sample(
        "pmmux_plugin_libraries_kept_mapped",
        &[],
        src.plugins.kept_mapped.load(Ordering::Relaxed),
    );

    o.family("pmmux_udp_flows_active", "gauge", "UDP flows alive now, by listener.");
    for (name, _, st) in &udp {
        o.sample(
            "pmmux_udp_flows_active",
            &[("listener", name)],
            st.flows.load(Ordering::Relaxed),
        );
    }
    o.family("pmmux_udp_flows_total", "counter", "UDP flows created, by listener.");
    for (name, _, st) in &udp {
        o.sample(
            "pmmux_udp_flows_total",
            &[("listener", name)],
            st.created.load(Ordering::Relaxed),
        );
    }
    o.family(
        "pmmux_udp_datagrams_total",
        "counter",
        "UDP datagrams received from clients, by listener.",
    );
    for (name, _, st) in &udp {
        o.sample(
            "pmmux_udp_datagrams_total",
            &[("listener", name)],
            st.datagrams.load(Ordering::Relaxed),
        );
    }
    o.family(
        "pmmux_udp_datagrams_dropped_total",
        "counter",
        "UDP datagrams from clients dropped, by listener and reason (unmatched: no backend wanted it; flow_table_full: a new client over max_udp_flows).",
    );
    for (name, _, st) in &udp {
        for (reason, v) in [("unmatched", &st.unmatched), ("flow_table_full", &st.rejected)] {
            let labels = [("listener", name.as_str()), ("reason", reason)];
            o.sample("pmmux_udp_datagrams_dropped_total", &labels, v.load(Ordering::Relaxed));
        }
    }
    o.family(
        "pmmux_udp_flows_expired_total",
        "counter",
        "UDP flows ended by their idle timeout, by listener.",
    );
    for (name, _, st) in &udp {
        o.sample(
            "pmmux_udp_flows_expired_total",
            &[("listener", name)],
            st.expired.load(Ordering::Relaxed),
        );
    }

    o.family(
        "pmmux_limit_hits_total",
        "counter",
        "Times a limit was hit, by limit and listener (max_connections and listener_max_connections: the accept loop paused; max_connections_per_ip and max_previews: a connection refused).",
    );
    for (listener, limits, _) in &tcp {
        for kind in LimitKind::ALL {
            let labels = [("limit", kind.label()), ("listener", listener.as_str())];
            o.sample("pmmux_limit_hits_total", &labels, limits.hits(kind));
        }
    }
    o.family(
        "pmmux_accept_errors_total",
        "counter",
        "Accept errors other than a client's own abort (EMFILE, ENFILE, ENOBUFS, ENOMEM, ...), by listener; each one is backed off from.",
    );
    for (listener, _, metrics) in &tcp {
        o.sample(
            "pmmux_accept_errors_total",
            &[("listener", listener)],
            metrics.accept_errors.load(Ordering::Relaxed),
        );
    }

    for (name, help, v) in [
        (
            "pmmux_config_reloads_total",
            "Configuration reloads applied.",
            &m.config_reloads,
        ),
        (
            "pmmux_config_reload_failures_total",
            "Configuration reloads refused (the running configuration stayed).",
            &m.config_reload_failures,
        ),
        (
            "pmmux_plugin_reloads_total",
            "Routing rebuilds after the plugin folder changed.",
            &m.plugin_reloads,
        ),
        (
            "pmmux_plugin_load_failures_total",
            "Plugin files refused while reconciling the plugin folder (the previous version, if any, kept serving).",
            &m.plugin_reload_failures,
        ),
    ] {
        o.family(name, "counter", help);
        o.sample(name, &[], v.load(Ordering::Relaxed));
    }
    if let Some(p) = &src.portmap {
        crate::portmap::render::metrics(&p.status(), &mut o.0);
    }
    o.0
}
