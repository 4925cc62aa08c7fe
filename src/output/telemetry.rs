//! Logging: JSON lines (the default, for `kubectl logs` and log collectors)
//! or tracing's human format, always on stdout.
//!
//! A JSON line is one flat object whose first keys are always, in order:
//! `timestamp` (RFC 3339 UTC with milliseconds, e.g.
//! `2026-11-23T06:01:02.345Z`), `level` (tracing's: `TRACE`, `DEBUG`,
//! `INFO`, `WARN`, `ERROR`), `severity` (the same in Cloud Logging's names:
//! `DEBUG`, `DEBUG`, `INFO`, `WARNING`, `ERROR`; collectors differ in which
//! key they read), `message` and `target`. The event's fields follow at the
//! top level, then the fields of the spans around it that the event does
//! not already have (inner spans win). Numbers and booleans stay JSON
//! numbers and booleans; the fields in [`JSON_FIELDS`], which the code
//! records as JSON text, are written as the arrays or objects they hold. A
//! field whose name is one of the five fixed keys is written as
//! `fields.<name>`.
//!
//! Each line reaches stdout in one write, so lines from concurrent tasks
//! never interleave, and strings are escaped by `serde_json`, so a value
//! with a newline or an escape sequence cannot break or colour a line.

use std::collections::HashSet;
use std::fmt;
use std::io::IsTerminal as _;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::EnvFilter;

use super::lock;

/// How log lines are written (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

impl LogFormat {
    /// `json` or `pretty`, in any case.
    pub fn parse(value: &str) -> Option<LogFormat> {
        match value.to_ascii_lowercase().as_str() {
            "json" => Some(LogFormat::Json),
            "pretty" => Some(LogFormat::Pretty),
            _ => None,
        }
    }
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `level` is not a valid `EnvFilter` directive string.
    #[error("LOG_LEVEL: invalid log filter {filter:?}: {reason}")]
    InvalidFilter { filter: String, reason: String },
    /// A global subscriber (or `log` logger) was installed before.
    #[error("logging is already set up: {0}")]
    AlreadyInstalled(String),
}

/// Installs the global subscriber: `format` on stdout, filtered by `level`
/// (an `EnvFilter` directive string such as `info` or
/// `api_consumer=debug,info`). Records of the `log` crate are forwarded too.
pub fn init(format: LogFormat, level: &str) -> Result<(), TelemetryError> {
    let filter = filter(level)?;
    let stdout = SealableStdout;
    let installed = match format {
        LogFormat::Json => json_subscriber(filter, stdout).try_init(),
        LogFormat::Pretty => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(stdout)
            // Colour codes only for a person at a terminal, never in files
            // or collected logs.
            .with_ansi(std::io::stdout().is_terminal())
            .finish()
            .try_init(),
    };
    installed.map_err(|e| TelemetryError::AlreadyInstalled(e.to_string()))
}

/// The target of the run summary. Writing an event with this target ends
/// logging for good, so that what libraries log while the process winds down
/// (connection pools closing, at trace level) cannot follow the summary.
pub const SUMMARY_TARGET: &str = "api_consumer::summary";

/// Whether the summary was written. Held while a line is written, so that
/// no line can slip in after the summary.
static SEALED: Mutex<bool> = Mutex::new(false);

/// A progress bar that log lines are printed above (pretty format at a
/// terminal only); `None` when there is none.
static PROGRESS_BAR: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);

/// Makes log lines clear `bar` before they are written and redraw it after,
/// so that the two never garble each other; `None` ends that.
pub fn print_above(bar: Option<indicatif::ProgressBar>) {
    *lock(&PROGRESS_BAR) = bar;
}

/// stdout, until the summary has been written.
struct SealableStdout;

/// One line's writer; it holds the seal's lock until the line is out.
struct LineWriter {
    sealed: MutexGuard<'static, bool>,
    seals: bool,
}

impl<'a> MakeWriter<'a> for SealableStdout {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            sealed: lock(&SEALED),
            seals: false,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        LineWriter {
            sealed: lock(&SEALED),
            seals: meta.target() == SUMMARY_TARGET,
        }
    }
}

impl std::io::Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if *self.sealed {
            return Ok(buf.len());
        }
        match lock(&PROGRESS_BAR).clone() {
            Some(bar) => bar.suspend(|| std::io::stdout().write(buf)),
            None => std::io::stdout().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if self.seals {
            let _ = std::io::Write::flush(&mut std::io::stdout());
            *self.sealed = true;
        }
    }
}

/// The filter for `level`. The run summary is kept at every level but
/// `off`: it is the run's last word, and a quieter level (`warn`) should not
/// lose it. A filter that names the summary's target itself is taken as is.
fn filter(level: &str) -> Result<EnvFilter, TelemetryError> {
    let silent = level.trim().eq_ignore_ascii_case("off");
    let directives = if silent || level.contains(SUMMARY_TARGET) {
        level.to_owned()
    } else {
        format!("{level},{SUMMARY_TARGET}=info")
    };
    EnvFilter::try_new(directives).map_err(|e| TelemetryError::InvalidFilter {
        filter: level.to_owned(),
        reason: e.to_string(),
    })
}

/// The JSON-lines subscriber writing to `writer`; [`init`] installs it on
/// stdout, tests render into a buffer.
pub fn json_subscriber<W>(filter: EnvFilter, writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        // Span fields are kept as JSON objects so that the event formatter
        // can merge them into the line with their types intact.
        .fmt_fields(JsonFields::new())
        .event_format(JsonLine)
        .finish()
}

/// Formats an event as one flat JSON object followed by a newline; not
/// tracing-subscriber's JSON format, which nests the fields of spans under
/// `span` and `spans` (only the event's own can be flattened) and has no
/// `severity`.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLine;

/// Keys every line starts with; fields with these names are renamed.
const FIXED_KEYS: [&str; 5] = ["timestamp", "level", "severity", "message", "target"];

/// Fields recorded as JSON text (with [`json_field`]) and written as the
/// JSON they hold: lists of nodes and answers per status, which log queries
/// can then treat as arrays and maps.
pub const JSON_FIELDS: [&str; 3] = ["present_on", "absent_on", "statuses"];

/// A value for one of the [`JSON_FIELDS`].
pub fn json_field(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// A level in Cloud Logging's `LogSeverity` names, which have no `TRACE` or
/// `WARN`.
pub fn severity(level: &tracing::Level) -> &'static str {
    match *level {
        tracing::Level::TRACE | tracing::Level::DEBUG => "DEBUG",
        tracing::Level::INFO => "INFO",
        tracing::Level::WARN => "WARNING",
        tracing::Level::ERROR => "ERROR",
    }
}

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = EventFields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let level = meta.level().as_str();
        let target = fields.log_target.unwrap_or_else(|| meta.target().into());
        let fixed: [Value; 5] = [
            rfc3339(SystemTime::now()).into(),
            level.into(),
            severity(meta.level()).into(),
            fields.message.unwrap_or_default().into(),
            target.into(),
        ];
        // The event's own fields, then each span's from the innermost out;
        // the first of a name wins.
        let mut values = fields.values;
        for span in ctx.event_scope().into_iter().flatten() {
            let extensions = span.extensions();
            let Some(formatted) = extensions.get::<FormattedFields<N>>() else {
                continue;
            };
            // JsonFields stores an object; anything else (another field
            // formatter) is skipped rather than written half-parsed.
            if let Ok(Value::Object(map)) = serde_json::from_str(&formatted.fields) {
                values.extend(map);
            }
        }
        let mut seen = HashSet::new();
        values.retain(|(name, _)| seen.insert(name.clone()));
        for (name, value) in &mut values {
            if FIXED_KEYS.contains(&name.as_str()) {
                *name = format!("fields.{name}");
            }
            if JSON_FIELDS.contains(&name.as_str()) {
                if let Some(parsed) = value.as_str().and_then(|t| serde_json::from_str(t).ok()) {
                    *value = parsed;
                }
            }
        }
        let fixed = FIXED_KEYS.map(String::from).into_iter().zip(fixed);
        for (i, (key, value)) in fixed.chain(values).enumerate() {
            let separator = if i == 0 { '{' } else { ',' };
            write!(writer, "{separator}{}:{value}", Value::from(key))?;
        }
        writer.write_str("}\n")
    }
}

/// An event's fields with their JSON types.
#[derive(Default)]
struct EventFields {
    message: Option<String>,
    /// The real target of a record forwarded from the `log` crate.
    log_target: Option<String>,
    values: Vec<(String, Value)>,
}

impl EventFields {
    fn record(&mut self, field: &Field, value: Value) {
        match field.name() {
            "message" => {
                self.message = Some(match value {
                    Value::String(text) => text,
                    other => other.to_string(),
                });
            }
            "log.target" => {
                if let Value::String(text) = value {
                    self.log_target = Some(text);
                }
            }
            // Source locations of forwarded `log` records: noise in a line.
            "log.module_path" | "log.file" | "log.line" => {}
            name => self.values.push((name.to_owned(), value)),
        }
    }
}

impl Visit for EventFields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinities; keep them readable as strings.
        match serde_json::Number::from_f64(value) {
            Some(number) => self.record(field, Value::Number(number)),
            None => self.record_str(field, &value.to_string()),
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record(field, Value::from(value));
    }

    // Beyond 64 bits, the digits as a string.
    fn record_i128(&mut self, field: &Field, value: i128) {
        match i64::try_from(value) {
            Ok(number) => self.record_i64(field, number),
            Err(_) => self.record_str(field, &value.to_string()),
        }
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        match u64::try_from(value) {
            Ok(number) => self.record_u64(field, number),
            Err(_) => self.record_str(field, &value.to_string()),
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.record(field, Value::from(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, Value::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // The error and its causes on one line: "outer: inner: root".
        let mut text = value.to_string();
        for cause in std::iter::successors(value.source(), |cause| cause.source()) {
            let cause = cause.to_string();
            if !text.ends_with(&cause) {
                text.push_str(": ");
                text.push_str(&cause);
            }
        }
        self.record(field, Value::from(text));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record(field, Value::from(format!("{value:?}")));
    }
}

/// `time` in RFC 3339 UTC with milliseconds: `2026-11-23T06:01:02.345Z`
/// (sub-millisecond parts truncated), from the `time` crate's calendar; an
/// instant outside its years (-9999 to 9999) reads as the nearest one within.
pub fn rfc3339(time: SystemTime) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    let nanos = match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_nanos()).unwrap_or(i128::MAX),
        Err(before) => -i128::try_from(before.duration().as_nanos()).unwrap_or(i128::MAX),
    };
    let nearest = match nanos < 0 {
        true => time::PrimitiveDateTime::MIN.assume_utc(),
        false => time::PrimitiveDateTime::MAX.assume_utc(),
    };
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(nearest);
    at.format(FORMAT).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[test]
    fn rfc3339_known_instants() {
        let cases: &[(i64, &str)] = &[
            (0, "1970-01-01T00:00:00.000Z"),
            (1, "1970-01-01T00:00:00.001Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
            (-86_400_000, "1969-12-31T00:00:00.000Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (951_868_799_999, "2000-02-29T23:59:59.999Z"),
            (978_307_200_000, "2001-01-01T00:00:00.000Z"),
            (1_700_000_000_123, "2023-11-14T22:13:20.123Z"),
            (1_709_164_800_000, "2024-02-29T00:00:00.000Z"),
            (1_795_413_662_345, "2026-11-23T06:01:02.345Z"),
            (4_102_444_799_999, "2099-12-31T23:59:59.999Z"),
            (4_107_542_400_000, "2100-03-01T00:00:00.000Z"),
            (253_402_300_799_000, "9999-12-31T23:59:59.000Z"),
            (-2_208_988_800_000, "1900-01-01T00:00:00.000Z"),
        ];
        for (millis, expected) in cases {
            let offset = Duration::from_millis(millis.unsigned_abs());
            let time = if *millis >= 0 {
                UNIX_EPOCH + offset
            } else {
                UNIX_EPOCH - offset
            };
            assert_eq!(rfc3339(time), *expected, "{millis} ms");
        }
        // Sub-millisecond parts are truncated, not rounded.
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_nanos(1_999_999)),
            "1970-01-01T00:00:00.001Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_nanos(1)),
            "1969-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn every_day_of_four_centuries_follows_the_calendar() {
        // Walk day by day from 1900 to 2300, checking each date follows the
        // previous one under the Gregorian calendar.
        let leap =
            |y: u32| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
        let month_days = |y: u32, m: u32| match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let mut expected = (1900_u32, 1_u32, 1_u32);
        for days in -25_567..(-25_567 + 146_097_i64) {
            let (y, m, d) = expected;
            let secs = days * 86_400 + 86_399;
            let offset = Duration::from_secs(secs.unsigned_abs());
            let time = if secs >= 0 {
                UNIX_EPOCH + offset
            } else {
                UNIX_EPOCH - offset
            };
            let date = format!("{y:04}-{m:02}-{d:02}T23:59:59.000Z");
            assert_eq!(rfc3339(time), date, "day {days}");
            expected = if d < month_days(y, m) {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
        }
    }

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let mut inner = self
                .0
                .lock()
                .map_err(|_| io::Error::other("buffer lock poisoned"))?;
            inner.extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;

        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    impl Buffer {
        fn lines(&self) -> Vec<String> {
            let bytes = match self.0.lock() {
                Ok(bytes) => bytes.clone(),
                Err(_) => panic!("buffer lock poisoned"),
            };
            match String::from_utf8(bytes) {
                Ok(text) => text.lines().map(str::to_owned).collect(),
                Err(e) => panic!("output is not UTF-8: {e}"),
            }
        }
    }

    fn render(level: &str, emit: impl FnOnce()) -> Vec<String> {
        let buffer = Buffer::default();
        let filter = match filter(level) {
            Ok(filter) => filter,
            Err(e) => panic!("{e}"),
        };
        tracing::subscriber::with_default(json_subscriber(filter, buffer.clone()), emit);
        buffer.lines()
    }

    fn parse(line: &str) -> serde_json::Map<String, Value> {
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(map)) => map,
            other => panic!("not a JSON object: {line:?} ({other:?})"),
        }
    }

    /// Top-level keys of a flat JSON line, in the order they are written.
    fn keys_in_order(line: &str) -> Vec<String> {
        let map = parse(line);
        let mut keys: Vec<(usize, String)> = map
            .keys()
            .map(|key| {
                let quoted = format!("{}:", Value::from(key.as_str()));
                match line.find(&quoted) {
                    Some(at) => (at, key.clone()),
                    None => panic!("key {key} not found in {line}"),
                }
            })
            .collect();
        keys.sort();
        keys.into_iter().map(|(_, key)| key).collect()
    }

    #[derive(Debug)]
    struct Outer(Inner);
    #[derive(Debug)]
    struct Inner;
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("request failed")
        }
    }
    impl fmt::Display for Inner {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("connection reset")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    impl std::error::Error for Inner {}

    #[test]
    fn json_lines_are_flat_typed_and_ordered() {
        let lines = render("info", || {
            let run = tracing::info_span!("run", operation = "create", attempt = 0_u64);
            let group =
                tracing::info_span!(parent: &run, "group", group_id = "g1", outer_only = true);
            let entered = group.enter();
            tracing::info!(
                node = "http://127.0.0.1:8080",
                attempt = 2_u64,
                status = 503_u16,
                delta = -3_i64,
                ratio = 0.5_f64,
                retried = true,
                not_a_number = f64::NAN,
                "request {} of {}",
                2,
                6
            );
            tracing::warn!(
                error_message = &Outer(Inner) as &(dyn std::error::Error + 'static),
                present_on = json_field(&["http://a:1", "http://b:2"]).as_str(),
                statuses = json_field(&std::collections::BTreeMap::from([("201", 9), ("404", 9)]))
                    .as_str(),
                target = "shadowed",
                "with \"quotes\"\nnewline and \u{1b}[31mescape"
            );
            tracing::debug!("filtered out at info");
            drop(entered);
            tracing::error!(exit_code = 3_u8, "summary");
        });
        assert_eq!(lines.len(), 3, "{lines:#?}");

        let first = parse(&lines[0]);
        assert_eq!(
            keys_in_order(&lines[0]),
            [
                "timestamp",
                "level",
                "severity",
                "message",
                "target",
                "node",
                "attempt",
                "status",
                "delta",
                "ratio",
                "retried",
                "not_a_number",
                "group_id",
                "outer_only",
                "operation",
            ]
        );
        let timestamp = first["timestamp"].as_str().unwrap_or_default();
        assert_eq!(
            timestamp.len(),
            "2026-11-23T06:01:02.345Z".len(),
            "{timestamp}"
        );
        assert!(timestamp.ends_with('Z') && timestamp.as_bytes()[10] == b'T');
        assert_eq!(first["level"], "INFO");
        assert_eq!(first["severity"], "INFO");
        assert_eq!(first["message"], "request 2 of 6");
        assert_eq!(first["target"], module_path!());
        assert_eq!(first["node"], "http://127.0.0.1:8080");
        // The event's attempt wins over the span's.
        assert_eq!(first["attempt"], 2);
        assert_eq!(first["status"], 503);
        assert_eq!(first["delta"], -3);
        assert_eq!(first["ratio"], 0.5);
        assert_eq!(first["retried"], true);
        assert_eq!(first["not_a_number"], "NaN");
        assert_eq!(first["group_id"], "g1");
        assert_eq!(first["outer_only"], true);
        assert_eq!(first["operation"], "create");

        let second = parse(&lines[1]);
        assert_eq!(second["level"], "WARN");
        // Cloud Logging's name.
        assert_eq!(second["severity"], "WARNING");
        assert_eq!(
            second["present_on"],
            serde_json::json!(["http://a:1", "http://b:2"])
        );
        assert_eq!(second["statuses"], serde_json::json!({"201": 9, "404": 9}));
        assert_eq!(
            second["message"],
            "with \"quotes\"\nnewline and \u{1b}[31mescape"
        );
        assert_eq!(second["error_message"], "request failed: connection reset");
        assert_eq!(second["target"], module_path!());
        assert_eq!(second["fields.target"], "shadowed");
        assert!(!lines[1].contains('\u{1b}'), "raw escape in {:?}", lines[1]);

        let third = parse(&lines[2]);
        assert_eq!(third["level"], "ERROR");
        assert_eq!(third["exit_code"], 3);
        assert_eq!(
            keys_in_order(&lines[2]),
            [
                "timestamp",
                "level",
                "severity",
                "message",
                "target",
                "exit_code"
            ]
        );
    }

    #[test]
    fn span_fields_recorded_later_are_included() {
        let directive = format!("{}=debug,warn", module_path!());
        let lines = render(&directive, || {
            let span =
                tracing::info_span!("group", group_id = "g7", outcome = tracing::field::Empty);
            let _entered = span.enter();
            span.record("outcome", "committed");
            tracing::debug!(duration_ms = 12_u64, "done");
            tracing::debug!(target: "other_crate", "filtered out by the directive");
        });
        assert_eq!(lines.len(), 1, "{lines:#?}");
        let line = parse(&lines[0]);
        assert_eq!(line["level"], "DEBUG");
        assert_eq!(line["severity"], "DEBUG");
        assert_eq!(line["group_id"], "g7");
        assert_eq!(line["outcome"], "committed");
        assert_eq!(line["duration_ms"], 12);
    }

    #[test]
    fn trace_is_debug_in_cloud_loggings_names() {
        let lines = render("trace", || tracing::trace!("fine detail"));
        assert_eq!(lines.len(), 1);
        let line = parse(&lines[0]);
        assert_eq!(
            (line["level"].as_str(), line["severity"].as_str()),
            (Some("TRACE"), Some("DEBUG"))
        );
    }

    #[test]
    fn event_without_message_still_has_the_key() {
        let lines = render("info", || tracing::info!(count = 1_u64));
        assert_eq!(lines.len(), 1);
        assert_eq!(parse(&lines[0])["message"], "");
    }

    #[test]
    fn invalid_filter_is_an_error_naming_log_level() {
        match filter("api_consumer=loud") {
            Ok(_) => panic!("expected an error"),
            Err(e) => assert!(e.to_string().starts_with("LOG_LEVEL: "), "{e}"),
        }
    }
}
