//! `retry::parse_retry_after`: never panics, never more than
//! `MAX_RETRY_AFTER`, and for well-formed values the delay the header says:
//! delay-seconds as is, an HTTP date as the time left until it (zero once
//! past), both capped.
#![no_main]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use api_consumer::node_api::{parse_retry_after, MAX_RETRY_AFTER};
use arbitrary::Arbitrary;
use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

/// The last second httpdate can format (9999-12-31T23:59:59Z).
const LAST_HTTP_DATE_SECS: u64 = 253_402_300_799;

#[derive(Arbitrary, Debug)]
struct Input {
    /// The clock, in seconds from the Unix epoch (negative: before it).
    now_secs: i64,
    /// The first `Retry-After` value: the one the parser reads.
    value: Value,
    /// Further `Retry-After` values after it.
    more: Vec<Value>,
}

#[derive(Arbitrary, Debug)]
enum Value {
    Seconds { secs: u64, pad: Padding },
    Date { secs: u64, pad: Padding },
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Padding {
    None,
    Spaces,
    Tabs,
}

impl Padding {
    fn apply(self, text: String) -> String {
        match self {
            Padding::None => text,
            Padding::Spaces => format!("  {text} "),
            Padding::Tabs => format!("\t{text}\t"),
        }
    }
}

impl Value {
    fn header(&self) -> Option<HeaderValue> {
        match self {
            Value::Seconds { secs, pad } => pad.apply(secs.to_string()).parse().ok(),
            Value::Date { secs, pad } => pad.apply(http_date(*secs)).parse().ok(),
            Value::Raw(bytes) => HeaderValue::from_bytes(bytes).ok(),
        }
    }

    /// The delay the value states, when it is well-formed.
    fn expected(&self, now: SystemTime) -> Option<Duration> {
        match self {
            Value::Seconds { secs, .. } => Some(Duration::from_secs(*secs).min(MAX_RETRY_AFTER)),
            Value::Date { secs, .. } => {
                let at = UNIX_EPOCH + Duration::from_secs(secs % (LAST_HTTP_DATE_SECS + 1));
                let left = at.duration_since(now).unwrap_or(Duration::ZERO);
                Some(left.min(MAX_RETRY_AFTER))
            }
            Value::Raw(_) => None,
        }
    }
}

fn http_date(secs: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs % (LAST_HTTP_DATE_SECS + 1)))
}

fn clock(secs: i64) -> SystemTime {
    let offset = Duration::from_secs(secs.unsigned_abs());
    let now = if secs < 0 {
        UNIX_EPOCH.checked_sub(offset)
    } else {
        UNIX_EPOCH.checked_add(offset)
    };
    now.unwrap_or(UNIX_EPOCH)
}

fuzz_target!(|input: Input| {
    let now = clock(input.now_secs);
    let mut headers = HeaderMap::new();
    let Some(first) = input.value.header() else {
        return;
    };
    headers.append(RETRY_AFTER, first);
    for value in &input.more {
        if let Some(value) = value.header() {
            headers.append(RETRY_AFTER, value);
        }
    }

    let parsed = parse_retry_after(&headers, now);
    if let Some(delay) = parsed {
        assert!(delay <= MAX_RETRY_AFTER, "{delay:?} for {headers:?}");
    }
    if let Some(expected) = input.value.expected(now) {
        assert_eq!(parsed, Some(expected), "for {headers:?} at {now:?}");
    }
});
