//! How a [`Record`] is written: as JSON, as logfmt text, and as the process log's
//! `connection closed` line (the same text `tracing` printed for it before).

use std::fmt::{self, Write};

use super::{push_addr, push_u64, write_ms, write_time, Outcome, Record, Transport};

/// One JSON object and a newline.
pub fn json(w: &mut String, r: &Record) -> fmt::Result {
    w.push_str("{\"time\":\"");
    write_time(w, r.ended)?;
    w.push_str("\",\"transport\":\"");
    w.push_str(transport(r));
    w.push_str("\",\"client\":");
    json_str(w, &r.client.to_string());
    w.push_str(",\"via\":");
    match &r.via {
        Some(v) => json_str(w, &v.to_string()),
        None => w.push_str("null"),
    }
    w.push_str(",\"listener\":");
    json_str(w, &r.listener);
    w.push_str(",\"backend\":");
    json_opt(w, r.backend_name());
    let (plugin, version) = r.plugin().unzip();
    w.push_str(",\"plugin\":");
    json_opt(w, plugin);
    w.push_str(",\"plugin_version\":");
    json_opt(w, version);
    w.push_str(",\"properties\":{");
    for (i, p) in r.properties.iter().enumerate() {
        if i > 0 {
            w.push(',');
        }
        json_str(w, &p.key);
        w.push(':');
        json_str(w, &p.value);
    }
    write!(w, "}},\"bytes_up\":{},\"bytes_down\":{}", r.bytes_up, r.bytes_down)?;
    if let Some((up, down)) = r.datagrams {
        write!(w, ",\"datagrams_up\":{up},\"datagrams_down\":{down}")?;
    }
    w.push_str(",\"duration_ms\":");
    write_ms(w, r.duration)?;
    w.push_str(",\"outcome\":\"");
    w.push_str(r.outcome.name());
    w.push('"');
    if let Outcome::Failed { side, .. } = &r.outcome {
        w.push_str(",\"side\":");
        json_str(w, side);
    }
    if let Some(e) = r.outcome.error() {
        w.push_str(",\"error\":");
        json_str(w, e);
    }
    w.push_str("}\n");
    Ok(())
}

/// One logfmt line: `time=... transport=tcp client=... listener=... backend=... ...`.
pub fn text(w: &mut String, r: &Record) -> fmt::Result {
    w.push_str("time=");
    write_time(w, r.ended)?;
    w.push_str(" transport=");
    w.push_str(transport(r));
    w.push_str(" client=");
    text_value(w, &r.client.to_string());
    if let Some(v) = &r.via {
        w.push_str(" via=");
        text_value(w, &v.to_string());
    }
    w.push_str(" listener=");
    text_value(w, &r.listener);
    w.push_str(" backend=");
    text_value(w, r.backend_name().unwrap_or("-"));
    let (plugin, version) = r.plugin().unzip();
    w.push_str(" plugin=");
    text_value(w, plugin.unwrap_or("-"));
    w.push_str(" plugin_version=");
    text_value(w, version.unwrap_or("-"));
    write!(w, " bytes_up={} bytes_down={}", r.bytes_up, r.bytes_down)?;
    if let Some((up, down)) = r.datagrams {
        write!(w, " datagrams_up={up} datagrams_down={down}")?;
    }
    w.push_str(" duration_ms=");
    write_ms(w, r.duration)?;
    w.push_str(" outcome=");
    w.push_str(r.outcome.name());
    if let Outcome::Failed { side, .. } = &r.outcome {
        w.push_str(" side=");
        w.push_str(side);
    }
    if let Some(e) = r.outcome.error() {
        w.push_str(" error=");
        text_value(w, e);
    }
    for p in &r.properties {
        w.push_str(" prop.");
        // Keys come from plugins: anything outside a plain name is replaced.
        w.extend(p.key.chars().map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        }));
        w.push('=');
        text_value(w, &p.value);
    }
    w.push('\n');
    Ok(())
}

/// The process log's line for a closed TCP connection, as `tracing-subscriber` printed it when
/// the connection's span carried these fields:
/// `<time>  INFO conn{peer=… listener=… backend="…" plugin="…"}: pmmux::tcp::connection: connection closed bytes_up=… bytes_down=… ms=…`,
/// or `connection closed by pmmux … reason="idle timeout"` when pmmux cut it.
pub fn closed_line(w: &mut String, r: &Record) -> fmt::Result {
    write_time(w, r.ended)?;
    w.push_str("  INFO conn{peer=");
    push_client(w, &r.client);
    if let Some(v) = &r.via {
        w.push_str(" via=");
        push_client(w, v);
    }
    w.push_str(" listener=");
    push_escaped(w, &r.listener);
    if let Some(name) = r.backend_name() {
        w.push_str(" backend=");
        push_quoted(w, name);
        match r.plugin() {
            Some((p, v)) => {
                w.push_str(" plugin=\"");
                w.extend(p.escape_debug());
                w.push('@');
                w.extend(v.escape_debug());
                w.push('"');
            }
            None => w.push_str(" plugin=\"builtin\""),
        }
    }
    w.push_str("}: pmmux::tcp::connection: connection closed");
    if let Outcome::Cut(_) = r.outcome {
        w.push_str(" by pmmux");
    }
    w.push_str(" bytes_up=");
    push_u64(w, r.bytes_up);
    w.push_str(" bytes_down=");
    push_u64(w, r.bytes_down);
    w.push_str(" ms=");
    write_ms(w, r.duration)?;
    if let Outcome::Cut(cut) = r.outcome {
        w.push_str(" reason=\"");
        w.push_str(cut.reason());
        w.push('"');
    }
    w.push('\n');
    Ok(())
}

/// A client as its `Display` shows it, an IP one without the formatting machinery.
fn push_client(w: &mut String, c: &super::Client) {
    match c {
        super::Client::Ip(a) => push_addr(w, *a),
        other => {
            let _ = write!(w, "{other}");
        }
    }
}

/// What `{:?}` prints for a string, copying it as it is when nothing needs escaping.
fn push_quoted(w: &mut String, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f) {
        w.push('"');
        w.push_str(s);
        w.push('"');
    } else {
        let _ = write!(w, "{s:?}");
    }
}

fn transport(r: &Record) -> &'static str {
    match r.transport {
        Transport::Tcp => "tcp",
        Transport::Udp => "udp",
    }
}

fn json_opt(w: &mut String, s: Option<&str>) {
    match s {
        Some(s) => json_str(w, s),
        None => w.push_str("null"),
    }
}

/// A JSON string literal.
fn json_str(w: &mut String, s: &str) {
    w.push('"');
    for c in s.chars() {
        match c {
            '"' => w.push_str("\\\""),
            '\\' => w.push_str("\\\\"),
            '\n' => w.push_str("\\n"),
            '\r' => w.push_str("\\r"),
            '\t' => w.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(w, "\\u{:04x}", c as u32);
            }
            c => w.push(c),
        }
    }
    w.push('"');
}

/// A logfmt value: bare when it has no space, quote, `=` or control character, else quoted.
fn text_value(w: &mut String, s: &str) {
    let bare = !s.is_empty()
        && !s
            .chars()
            .any(|c| c == ' ' || c == '"' || c == '=' || c == '\\' || c.is_control());
    if bare {
        w.push_str(s);
    } else {
        let _ = write!(w, "{s:?}");
    }
}

/// Text with control characters escaped (a listener name goes into the line as it is).
fn push_escaped(w: &mut String, s: &str) {
    for c in s.chars() {
        if c.is_control() {
            w.extend(c.escape_default());
        } else {
            w.push(c);
        }
    }
}
