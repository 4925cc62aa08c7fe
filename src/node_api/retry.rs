//! When an attempt is retried, and after how long: the retry crate's
//! classification ([`RetryableStrategy`]) and exponential backoff with full
//! jitter ([`ExponentialBackoff`]), plus what its middleware leaves out: a
//! node's `Retry-After` (seconds or an HTTP date), which the wait never
//! undercuts, so a throttling node is never asked again before it said it
//! is ready. The loop that applies this policy is [`super::NodeClient`]'s
//! one request path.
//!
//! Which answers are transient is decided by [`NodeRetryStrategy`]: `408`,
//! `429`, `500`, `502`, `503`, `504`, connect errors, timeouts and resets.
//! Retrying a write after an answer that may have been applied is safe here
//! because the transaction engine resolves the final answer by reading the
//! node back (a re-sent create that finds its own earlier attempt answers
//! `400`, which is ambiguous, not a failure).

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};
use reqwest::Response;
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_retry::{Jitter, RetryDecision, RetryPolicy, Retryable, RetryableStrategy};
use tokio::time::Instant;

/// The longest `Retry-After` honoured; a larger value is clamped so that one
/// confused node cannot park a group past every deadline (the run's own
/// deadline still cuts any wait short).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// What the attempts of one request were.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attempts {
    /// How many attempts were sent (or tried to connect).
    pub count: u32,
    /// Whether an attempt before the last one may have been applied by the
    /// node. Only a `429` or a refused connection proves it was not.
    pub earlier_maybe_applied: bool,
    /// Whether any attempt, the last included, may have been applied.
    pub maybe_applied: bool,
    /// When the last attempt whose answer was lost may still land, at the
    /// latest: the moment the job stopped waiting for it (the latest the
    /// node can have received it) plus `WRITE_SETTLE_MS`. An answer is lost
    /// when the node may still be working on the attempt: a timeout or a
    /// broken connection after it was sent, or a `5xx` (from the node or a
    /// gateway in front of it). `None` when every attempt was answered for
    /// good.
    pub settles_at: Option<Instant>,
}

impl Attempts {
    /// Counts one more attempt, which got `result` at `ended`; `settle` is
    /// how long a node may take to apply it (`WRITE_SETTLE_MS`).
    pub(super) fn add(
        &mut self,
        result: &reqwest_middleware::Result<Response>,
        ended: Instant,
        settle: Duration,
    ) {
        self.count += 1;
        self.earlier_maybe_applied = self.maybe_applied;
        self.maybe_applied |= !proves_not_applied(result);
        if answer_lost(result) {
            self.settles_at = self.settles_at.max(Some(ended + settle));
        }
    }
}

/// Whether the node may still be working on an attempt that got `result`.
fn answer_lost(result: &Result<Response, reqwest_middleware::Error>) -> bool {
    match result {
        Ok(response) => response.status().is_server_error(),
        Err(reqwest_middleware::Error::Reqwest(e)) => !e.is_connect(),
        Err(reqwest_middleware::Error::Middleware(_)) => false,
    }
}

/// Whether an answer proves the node did not apply the request.
fn proves_not_applied(result: &Result<Response, reqwest_middleware::Error>) -> bool {
    match result {
        Ok(response) => response.status() == StatusCode::TOO_MANY_REQUESTS,
        Err(reqwest_middleware::Error::Reqwest(e)) => e.is_connect(),
        Err(reqwest_middleware::Error::Middleware(_)) => true,
    }
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP date.
pub fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let delay = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

/// Classifies one attempt for retrying.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeRetryStrategy;

/// Status codes a node may answer when it is briefly unable to serve.
pub fn is_transient_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// Transport failures worth another attempt: the node may answer next time.
/// A TLS failure is not one: a certificate does not fix itself.
pub fn is_transient_error(error: &reqwest_middleware::Error) -> bool {
    match error {
        reqwest_middleware::Error::Reqwest(e) => {
            (e.is_timeout() || e.is_connect() || e.is_request() || e.is_body())
                && !super::errors::is_tls_error(error)
        }
        reqwest_middleware::Error::Middleware(_) => false,
    }
}

impl RetryableStrategy for NodeRetryStrategy {
    fn handle(&self, res: &Result<Response, reqwest_middleware::Error>) -> Option<Retryable> {
        match res {
            Ok(response) if response.status().is_success() => None,
            Ok(response) if is_transient_status(response.status()) => Some(Retryable::Transient),
            Ok(_) => Some(Retryable::Fatal),
            Err(error) if is_transient_error(error) => Some(Retryable::Transient),
            Err(_) => Some(Retryable::Fatal),
        }
    }
}

/// Whether an attempt's result is worth another attempt (see
/// [`NodeRetryStrategy`]).
pub(super) fn is_transient(result: &reqwest_middleware::Result<Response>) -> bool {
    NodeRetryStrategy.handle(result) == Some(Retryable::Transient)
}

/// Retry policy settings (from `MAX_RETRIES`, `RETRY_BASE_DELAY_MS`,
/// `RETRY_MAX_DELAY_MS`).
#[derive(Debug, Clone, Copy)]
pub struct RetrySettings {
    pub max_retries: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

/// The retry policy of every request.
pub(super) struct Retry {
    policy: ExponentialBackoff,
    max_retries: u32,
}

impl Retry {
    pub(super) fn new(settings: RetrySettings) -> Self {
        let policy = ExponentialBackoff::builder()
            .retry_bounds(settings.base_delay, settings.max_delay)
            .jitter(Jitter::Full)
            .build_with_max_retries(settings.max_retries);
        Self {
            policy,
            max_retries: settings.max_retries,
        }
    }

    /// `MAX_RETRIES`.
    pub(super) fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// The wait before the next attempt of a request that started at
    /// `started` and has been retried `retries` times, after `result`, whose
    /// `Retry-After` said `retry_after`: `None` when it is not retried. The
    /// wait is the longer of the backoff and `retry_after`.
    pub(super) fn wait(
        &self,
        started: SystemTime,
        retries: u32,
        result: &reqwest_middleware::Result<Response>,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        if !is_transient(result) {
            return None;
        }
        let RetryDecision::Retry { execute_after } = self.policy.should_retry(started, retries)
        else {
            return None;
        };
        let backoff = execute_after
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        Some(retry_after.map_or(backoff, |after| after.max(backoff)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(
            http::header::RETRY_AFTER,
            HeaderValue::from_str(value).unwrap(),
        );
        map
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            parse_retry_after(&headers(" 7 "), now),
            Some(Duration::from_secs(7))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&headers(&later), now),
            Some(Duration::from_secs(30))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&headers(&past), now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after(&headers("99999999"), now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(parse_retry_after(&headers("soon"), now), None);
        assert_eq!(parse_retry_after(&headers("-1"), now), None);
        assert_eq!(parse_retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn transient_statuses() {
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(is_transient_status(StatusCode::from_u16(code).unwrap()));
        }
        for code in [200, 201, 301, 400, 401, 403, 404, 409, 501] {
            assert!(!is_transient_status(StatusCode::from_u16(code).unwrap()));
        }
    }
}
