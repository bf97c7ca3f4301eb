//! A cheaper rendering of `tracing-subscriber`'s default ("full") line, byte for byte the same
//! without colours: `2026-01-02T03:04:05.678901Z  INFO span{a=1 b="x"}: target: message c=2`.
//!
//! The stock formatter pays per field for its colour wrappers (even when colours are off), for
//! escaping every string through `Debug` character by character and for the date; at a line per
//! connection that was 40% of pmmux's own instructions per connection (callgrind). Here strings
//! that need no escaping are copied as they are, and the date is rebuilt only once a second per
//! thread. Control characters in messages and values are still escaped (no log injection).

use std::cell::RefCell;
use std::fmt::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter.
#[derive(Debug, Default)]
pub struct Line;

/// The field formatter (for events and spans alike).
#[derive(Debug, Default)]
pub struct Fields;

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        write_timestamp(&mut w)?;
        w.write_str(match *meta.level() {
            Level::ERROR => " ERROR ",
            Level::WARN => "  WARN ",
            Level::INFO => "  INFO ",
            Level::DEBUG => " DEBUG ",
            Level::TRACE => " TRACE ",
        })?;
        if let Some(scope) = ctx.event_scope() {
            let mut seen = false;
            for span in scope.from_root() {
                w.write_str(span.metadata().name())?;
                seen = true;
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>() {
                    if !fields.is_empty() {
                        w.write_char('{')?;
                        w.write_str(fields)?;
                        w.write_char('}')?;
                    }
                }
                w.write_char(':')?;
            }
            if seen {
                w.write_char(' ')?;
            }
        }
        w.write_str(meta.target())?;
        w.write_str(": ")?;
        ctx.format_fields(w.by_ref(), event)?;
        w.write_char('\n')
    }
}

impl<'w> MakeVisitor<Writer<'w>> for Fields {
    type Visitor = Visitor<'w>;

    fn make_visitor(&self, target: Writer<'w>) -> Visitor<'w> {
        Visitor {
            w: target,
            first: true,
            result: Ok(()),
        }
    }
}

/// Writes `name=value` pairs separated by spaces; the message first, bare.
pub struct Visitor<'w> {
    w: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl Visitor<'_> {
    fn start(&mut self, field: &Field) -> fmt::Result {
        if !self.first {
            self.w.write_char(' ')?;
        }
        self.first = false;
        if field.name() != "message" {
            let name = field.name();
            self.w.write_str(name.strip_prefix("r#").unwrap_or(name))?;
            self.w.write_char('=')?;
        }
        Ok(())
    }

    fn put(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self.start(field).and_then(|()| value(&mut self.w));
        }
    }
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let message = field.name() == "message";
        self.put(field, |w| {
            if message {
                write_escaped(w, value)
            } else if value.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f) {
                // What `{:?}` prints for a string with nothing to escape.
                w.write_char('"')?;
                w.write_str(value)?;
                w.write_char('"')
            } else {
                write!(w, "{value:?}")
            }
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, |w| write!(w, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, |w| write!(w, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, |w| w.write_str(if value { "true" } else { "false" }));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let name = field.name();
        self.put(field, |w| {
            write!(Escaping(w), "{value}")?;
            let mut source = value.source();
            if source.is_some() {
                write!(w, " {name}.sources=[")?;
                let mut first = true;
                while let Some(s) = source {
                    if !first {
                        w.write_str(", ")?;
                    }
                    first = false;
                    write!(Escaping(w), "{s}")?;
                    source = s.source();
                }
                w.write_char(']')?;
            }
            Ok(())
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, |w| write!(Escaping(w), "{value:?}"));
    }
}

impl VisitOutput<fmt::Result> for Visitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for Visitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.w
    }
}

/// Passes text through, escaping control characters (a client-chosen name or a plugin's message
/// must not start a new line or drive a terminal).
struct Escaping<'a, W: Write>(&'a mut W);

impl<W: Write> Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_escaped(self.0, s)
    }
}

fn needs_escape(c: char) -> bool {
    c.is_control()
}

fn write_escaped(w: &mut impl Write, s: &str) -> fmt::Result {
    if !s.bytes().any(|b| b < 0x20 || b == 0x7f || b == 0xc2) {
        return w.write_str(s);
    }
    let mut rest = s;
    while let Some(i) = rest.find(needs_escape) {
        w.write_str(&rest[..i])?;
        let c = rest[i..].chars().next().unwrap_or('\0');
        write!(w, "{}", c.escape_default())?;
        rest = &rest[i + c.len_utf8()..];
    }
    w.write_str(rest)
}

thread_local! {
    /// The last second formatted on this thread, and its text (`2026-01-02T03:04:05`).
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// `2026-01-02T03:04:05.678901Z` (UTC, microseconds), as `tracing-subscriber` prints it.
fn write_timestamp(w: &mut impl Write) -> fmt::Result {
    write_time_at(w, SystemTime::now())
}

/// `2026-01-02T03:04:05.678901Z` for `t`; the date and time of day are rebuilt once a second per
/// thread.
pub fn write_time_at(w: &mut impl Write, t: SystemTime) -> fmt::Result {
    let now = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs();
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            cached.1.clear();
            let _ = write_date_time(&mut cached.1, secs);
            cached.0 = secs;
        }
        w.write_str(&cached.1)
    })?;
    let micros = now.subsec_micros();
    let mut digits = *b".000000Z";
    let mut n = micros;
    for d in digits[1..7].iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    w.write_str(std::str::from_utf8(&digits).unwrap_or(".000000Z"))
}

/// `YYYY-MM-DDTHH:MM:SS` for seconds since 1970 (UTC).
pub fn write_date_time(w: &mut impl Write, secs: u64) -> fmt::Result {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    write!(
        w,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_the_calendar() {
        let mut s = String::new();
        write_date_time(&mut s, 0).unwrap();
        assert_eq!(s, "1970-01-01T00:00:00");
        s.clear();
        // 2000-02-29 (a leap day of a century leap year) 12:34:56
        write_date_time(&mut s, 951_827_696).unwrap();
        assert_eq!(s, "2000-02-29T12:34:56");
        s.clear();
        write_date_time(&mut s, 4_102_444_799).unwrap();
        assert_eq!(s, "2099-12-31T23:59:59");
    }

    #[test]
    fn control_characters_are_escaped_and_plain_text_is_not() {
        let mut s = String::new();
        write_escaped(&mut s, "plain text, ünïcode").unwrap();
        assert_eq!(s, "plain text, ünïcode");
        s.clear();
        write_escaped(&mut s, "a\nb\x1b[31mc\u{85}d").unwrap();
        assert_eq!(s, "a\\nb\\u{1b}[31mc\\u{85}d");
    }
}
