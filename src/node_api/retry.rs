//! Retries of transient answers, honouring `Retry-After`.
//!
//! `reqwest-retry` supplies the two halves we want — a [`RetryableStrategy`]
//! that classifies an attempt and an exponential backoff with full jitter —
//! but its middleware sleeps only for the backoff and ignores a node's
//! `Retry-After`. [`RetryAfterMiddleware`] drives the same two halves and waits
//! for the longer of the backoff and `Retry-After` (seconds or an HTTP date),
//! so a throttling node is never asked again before it said it is ready.
//!
//! Which answers are transient is decided by [`NodeRetryStrategy`]: `408`,
//! `429`, `500`, `502`, `503`, `504`, connect errors, timeouts and resets.
//! Retrying a write after an answer that may have been applied is safe here
//! because the transaction engine resolves the final answer by reading the
//! node back (a re-sent create that finds its own earlier attempt answers
//! `400`, which is ambiguous, not a failure).

use std::time::{Duration, SystemTime};

use http::{Extensions, HeaderMap, StatusCode};
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_retry::{Jitter, RetryDecision, RetryPolicy, Retryable, RetryableStrategy};
use tokio_util::sync::CancellationToken;

/// The target these log lines carry, which `LOG_LEVEL` directives name
/// (`api_consumer::retry=debug`): part of the log interface, kept whatever file
/// the code lives in.
const LOG_TARGET: &str = "api_consumer::retry";

/// The longest `Retry-After` honoured; a larger value is clamped so that one
/// confused node cannot park a group past every deadline (the run's own
/// deadline still cuts any wait short).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// What the attempts of one request were; inserted into the request's
/// extensions for the caller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attempts {
    /// How many attempts were sent (or tried to connect).
    pub count: u32,
    /// Whether an attempt before the last one may have been applied by the
    /// node. Only a `429` or a refused connection proves it was not.
    pub earlier_maybe_applied: bool,
    /// Whether any attempt, the last included, may have been applied.
    pub maybe_applied: bool,
}

/// Whether an answer proves the node did not apply the request.
fn proves_not_applied(result: &Result<Response, reqwest_middleware::Error>) -> bool {
    match result {
        Ok(response) => response.status() == StatusCode::TOO_MANY_REQUESTS,
        Err(reqwest_middleware::Error::Reqwest(e)) => e.is_connect(),
        Err(reqwest_middleware::Error::Middleware(_)) => true,
    }
}

/// Request extension: how logs name the node a request is for.
#[derive(Debug, Clone)]
pub struct NodeName(pub std::sync::Arc<str>);

/// Request extension: once this token is cancelled no further attempt
/// starts. An attempt already on the wire is left to finish (or time out),
/// because dropping the connection would not stop a node from applying it;
/// its answer is what the caller gets.
#[derive(Debug, Clone)]
pub struct StopRetrying(pub CancellationToken);

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

/// Retry policy settings (from `MAX_RETRIES`, `RETRY_BASE_DELAY_MS`,
/// `RETRY_MAX_DELAY_MS`).
#[derive(Debug, Clone, Copy)]
pub struct RetrySettings {
    pub max_retries: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

/// Retries transient attempts with exponential backoff and full jitter,
/// never sooner than the node's `Retry-After`.
pub struct RetryAfterMiddleware<S = NodeRetryStrategy> {
    policy: ExponentialBackoff,
    strategy: S,
}

impl RetryAfterMiddleware<NodeRetryStrategy> {
    pub fn new(settings: RetrySettings) -> Self {
        let policy = ExponentialBackoff::builder()
            .retry_bounds(settings.base_delay, settings.max_delay)
            .jitter(Jitter::Full)
            .build_with_max_retries(settings.max_retries);
        Self {
            policy,
            strategy: NodeRetryStrategy,
        }
    }
}

fn describe(result: &Result<Response, reqwest_middleware::Error>) -> (Option<u16>, String) {
    match result {
        Ok(response) => (
            Some(response.status().as_u16()),
            response.status().to_string(),
        ),
        Err(error) => (None, super::errors::describe_error(error)),
    }
}

#[async_trait::async_trait]
impl<S: RetryableStrategy + Send + Sync + 'static> Middleware for RetryAfterMiddleware<S> {
    async fn handle(
        &self,
        req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let started = SystemTime::now();
        let stop = extensions.get::<StopRetrying>().map(|s| s.0.clone());
        let node = extensions.get::<NodeName>().map(|n| n.0.clone());
        let method = req.method().clone();
        let mut past_retries = 0u32;
        let mut earlier_maybe_applied = false;
        loop {
            let attempt = req.try_clone().ok_or_else(|| {
                reqwest_middleware::Error::Middleware(anyhow::anyhow!(
                    "request body cannot be replayed for a retry"
                ))
            })?;
            let result = next.clone().run(attempt, extensions).await;
            extensions.insert(Attempts {
                count: past_retries + 1,
                earlier_maybe_applied,
                maybe_applied: earlier_maybe_applied || !proves_not_applied(&result),
            });
            let stopped = stop.as_ref().is_some_and(|s| s.is_cancelled());
            if stopped || self.strategy.handle(&result) != Some(Retryable::Transient) {
                return result;
            }
            let RetryDecision::Retry { execute_after } =
                self.policy.should_retry(started, past_retries)
            else {
                return result;
            };
            let now = SystemTime::now();
            let backoff = execute_after.duration_since(now).unwrap_or(Duration::ZERO);
            let retry_after = result
                .as_ref()
                .ok()
                .and_then(|response| parse_retry_after(response.headers(), now));
            let delay = retry_after.map_or(backoff, |after| after.max(backoff));
            earlier_maybe_applied |= !proves_not_applied(&result);
            let (status, reason) = describe(&result);
            tracing::info!(target: LOG_TARGET,
                node = node.as_deref(),
                method = %method,
                attempt = past_retries + 1,
                status,
                reason = %reason,
                retry_after_ms = retry_after.map(|d| d.as_millis() as u64),
                delay_ms = delay.as_millis() as u64,
                "transient answer, retrying after backoff"
            );
            match &stop {
                Some(stop) => {
                    tokio::select! {
                        _ = stop.cancelled() => return result,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                None => tokio::time::sleep(delay).await,
            }
            past_retries += 1;
        }
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
