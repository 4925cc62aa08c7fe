//! [`NodeClient`]: the node API over HTTP, one answer class per call.
//!
//! A request passes two middlewares before reaching the network:
//!
//! 1. [`RetryAfterMiddleware`](crate::retry::RetryAfterMiddleware) retries
//!    transient answers with backoff and `Retry-After`;
//! 2. [`GateMiddleware`] applies the node's own limits to every attempt: a
//!    pause after a `429` (so other groups do not hammer a throttling node),
//!    the `NODE_RATE_LIMIT` token bucket and the `NODE_CONCURRENCY`
//!    semaphore; it also reads the body (capped at [`MAX_BODY_BYTES`]) so a
//!    reset in the middle of a body is one more transient attempt.
//!
//! What is left for the caller is a [`WriteAnswer`] or a [`ReadAnswer`]. The
//! client never guesses: any write answer other than the expected success is
//! [`WriteAnswer::Unresolved`], and the transaction engine reads the node back.
//! Redirects are followed only to the same scheme, host and port.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hdrhistogram::Histogram;
use http::{Extensions, HeaderMap, HeaderValue, Method, StatusCode};
use reqwest::{Request, Response};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Semaphore;
use url::Url;

use crate::api::{group_segment, GroupBody, GROUP_COLLECTION_PATH};
use crate::config::{GroupId, NodeAddress, Secret};
use crate::retry::{
    parse_retry_after, Attempts, NodeName, RetryAfterMiddleware, RetrySettings, StopRetrying,
};
use tokio_util::sync::CancellationToken;

/// Bodies are read up to this size; node answers are tiny, so anything larger
/// is cut off rather than buffered.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
const MAX_REDIRECTS: usize = 5;

/// Client settings taken from the configuration.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: RetrySettings,
    pub auth_token: Option<Secret>,
    pub node_concurrency: usize,
    pub node_rate_limit: Option<NonZeroU32>,
    /// Trust anchors added to the system's for https nodes.
    pub ca_certificates: Vec<reqwest::Certificate>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("AUTH_TOKEN is not a valid HTTP header value")]
    InvalidToken,
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
}

/// The answer to a create or delete, after retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteAnswer {
    /// The node answered the expected success (`201` create, `200` delete).
    Applied,
    /// Anything else: the write may or may not have landed (a `400` on
    /// create, a `404` on delete, retries exhausted, a refusal after an
    /// earlier attempt that may have landed). Resolved by reading back.
    Unresolved { status: Option<u16>, detail: String },
}

/// The answer to a read of one group on one node, after retries.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadAnswer {
    /// The node holds the group; the record it returned (or the plain
    /// `{"groupId": ..}` record when its body was not a JSON object).
    Present(Value),
    Absent,
    /// The node's state could not be learnt.
    Failed {
        status: Option<u16>,
        detail: String,
    },
}

/// Per-node counters for the run report.
#[derive(Debug)]
pub struct NodeStats {
    attempts: AtomicU64,
    retries: AtomicU64,
    transport_errors: AtomicU64,
    /// Answers per status and attempt times, under one lock per attempt.
    answers: Mutex<Answers>,
}

#[derive(Debug)]
struct Answers {
    statuses: BTreeMap<u16, u64>,
    /// Time of each attempt, in microseconds.
    latency: Histogram<u32>,
}

impl Default for NodeStats {
    fn default() -> Self {
        Self {
            attempts: AtomicU64::default(),
            retries: AtomicU64::default(),
            transport_errors: AtomicU64::default(),
            answers: Mutex::new(Answers {
                statuses: BTreeMap::new(),
                latency: latency_histogram(),
            }),
        }
    }
}

/// A histogram of attempt times in microseconds, to two significant digits.
/// It grows only to cover the longest time recorded (a few KiB per node for
/// answers within seconds), whatever the number of requests.
#[allow(clippy::expect_used)] // Constant, valid precision; a unit test builds it.
fn latency_histogram() -> Histogram<u32> {
    Histogram::new(2).expect("valid histogram precision")
}

/// Attempt times of one node (or of all), in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    fn of(histogram: &Histogram<u32>) -> Latency {
        if histogram.is_empty() {
            return Latency::default();
        }
        let ms = |micros: u64| (micros as f64 / 100.0).round() / 10.0;
        Latency {
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            max_ms: ms(histogram.max()),
        }
    }
}

/// A snapshot of [`NodeStats`].
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct NodeStatsSnapshot {
    pub node: String,
    /// Attempts sent (or that tried to connect), retries included.
    pub requests: u64,
    /// Attempts after the first of a request.
    pub retries: u64,
    pub transport_errors: u64,
    /// Answers per HTTP status.
    pub statuses: BTreeMap<String, u64>,
    pub latency: Latency,
    #[serde(skip)]
    histogram: Option<Arc<Histogram<u32>>>,
}

/// The requests of a run over every node.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RequestTotals {
    pub requests: u64,
    pub retries: u64,
    pub transport_errors: u64,
    pub statuses: BTreeMap<String, u64>,
    pub latency: Latency,
}

impl RequestTotals {
    pub fn over(nodes: &[NodeStatsSnapshot]) -> RequestTotals {
        let mut totals = RequestTotals::default();
        let mut all = latency_histogram();
        for node in nodes {
            totals.requests += node.requests;
            totals.retries += node.retries;
            totals.transport_errors += node.transport_errors;
            for (status, count) in &node.statuses {
                *totals.statuses.entry(status.clone()).or_default() += count;
            }
            if let Some(histogram) = &node.histogram {
                // `all` resizes itself, so adding cannot fail.
                let _ = all.add(histogram.as_ref());
            }
        }
        totals.latency = Latency::of(&all);
        totals
    }
}

impl NodeStats {
    fn record(&self, result: &reqwest_middleware::Result<Response>, took: Duration) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        if result.is_err() {
            self.transport_errors.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut answers) = self.answers.lock() {
            // An attempt is cut off by REQUEST_TIMEOUT_MS (at most ten
            // minutes); anything past an hour is clamped all the same.
            const HOUR_MICROS: u64 = 3_600_000_000;
            let micros = (took.as_micros() as u64).clamp(1, HOUR_MICROS);
            let _ = answers.latency.record(micros);
            if let Ok(response) = result {
                *answers
                    .statuses
                    .entry(response.status().as_u16())
                    .or_default() += 1;
            }
        }
    }

    fn snapshot(&self, node: &str) -> NodeStatsSnapshot {
        let (statuses, histogram) = match self.answers.lock() {
            Ok(answers) => (
                answers
                    .statuses
                    .iter()
                    .map(|(k, v)| (k.to_string(), *v))
                    .collect(),
                Some(Arc::new(answers.latency.clone())),
            ),
            Err(_) => (BTreeMap::new(), None),
        };
        NodeStatsSnapshot {
            node: node.to_owned(),
            requests: self.attempts.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            transport_errors: self.transport_errors.load(Ordering::Relaxed),
            statuses,
            latency: histogram.as_deref().map(Latency::of).unwrap_or_default(),
            histogram,
        }
    }
}

/// The limits applied to every attempt against one node.
pub struct NodeGate {
    permits: Semaphore,
    rate: Option<DefaultDirectRateLimiter>,
    paused_until: Mutex<Option<Instant>>,
    stats: NodeStats,
}

impl NodeGate {
    fn new(concurrency: usize, rate: Option<NonZeroU32>) -> Self {
        Self {
            permits: Semaphore::new(concurrency.max(1)),
            // No burst: requests leave 1/R s apart, so a node that enforces
            // the same limit (even with no burst of its own) never refuses.
            rate: rate
                .map(|r| RateLimiter::direct(Quota::per_second(r).allow_burst(NonZeroU32::MIN))),
            paused_until: Mutex::new(None),
            stats: NodeStats::default(),
        }
    }

    fn pause_for(&self, delay: Duration) {
        let until = Instant::now() + delay;
        if let Ok(mut paused) = self.paused_until.lock() {
            if paused.is_none_or(|current| current < until) {
                *paused = Some(until);
            }
        }
    }

    /// Waits until the node may receive one more request: its `429` pause is
    /// over, the rate limit has a token and a concurrency slot is free.
    async fn admit(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.wait_unpaused().await;
        if let Some(rate) = &self.rate {
            rate.until_ready().await;
        }
        self.permits.acquire().await.ok()
    }

    async fn wait_unpaused(&self) {
        loop {
            let until = self.paused_until.lock().ok().and_then(|paused| *paused);
            match until {
                Some(until) if until > Instant::now() => {
                    tokio::time::sleep_until(until.into()).await;
                }
                _ => return,
            }
        }
    }
}

/// Extension carrying the gate of the node a request is for.
#[derive(Clone)]
struct GateRef(Arc<NodeGate>);

/// Applies per-node limits to each attempt and buffers the (capped) body.
struct GateMiddleware;

#[async_trait::async_trait]
impl Middleware for GateMiddleware {
    async fn handle(
        &self,
        req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let Some(GateRef(gate)) = extensions.get::<GateRef>().cloned() else {
            return next.run(req, extensions).await;
        };
        let stop = extensions
            .get::<StopRetrying>()
            .map(|s| s.0.clone())
            .unwrap_or_default();
        let _permit = tokio::select! {
            biased;
            _ = stop.cancelled() => None,
            permit = gate.admit() => permit,
        }
        .ok_or_else(|| {
            reqwest_middleware::Error::Middleware(anyhow::anyhow!("cancelled before sending"))
        })?;
        extensions.remove::<AnswerBody>();
        let sent = Instant::now();
        let result = match next.run(req, extensions).await {
            Ok(mut response) => read_body(&mut response).await.map(|body| {
                extensions.insert(AnswerBody(body));
                response
            }),
            Err(error) => Err(error),
        };
        gate.stats.record(&result, sent.elapsed());
        if let Ok(response) = &result {
            if response.status() == StatusCode::TOO_MANY_REQUESTS {
                if let Some(delay) = parse_retry_after(response.headers(), SystemTime::now()) {
                    gate.pause_for(delay);
                }
            }
        }
        result
    }
}

/// Request extension: the body of the last attempt's answer, as the gate
/// read it. The response itself is handed on with its body consumed:
/// rebuilding a `reqwest::Response` around the bytes would cost a URL parse
/// per answer.
#[derive(Clone)]
struct AnswerBody(Vec<u8>);

/// Reads the body up to [`MAX_BODY_BYTES`], so that a body that fails midway
/// is an error of this attempt.
async fn read_body(response: &mut Response) -> reqwest_middleware::Result<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_BODY_BYTES - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_BODY_BYTES {
            break;
        }
    }
    Ok(body)
}

/// One human-readable line for a transport error, without URLs (which could
/// carry a path a user considers private) and without headers.
pub fn describe_error(error: &reqwest_middleware::Error) -> String {
    match error {
        reqwest_middleware::Error::Reqwest(e) => {
            let kind = if is_tls_error(error) {
                "TLS handshake failed"
            } else if e.is_timeout() {
                "timeout"
            } else if e.is_connect() {
                "connection failed"
            } else if e.is_redirect() {
                "redirect refused"
            } else if e.is_body() || e.is_decode() {
                "body read failed"
            } else if e.is_request() {
                "request failed"
            } else {
                "transport error"
            };
            match causes(error).skip(1).last() {
                Some(root) => format!("{kind}: {root}"),
                None => kind.to_string(),
            }
        }
        reqwest_middleware::Error::Middleware(e) => format!("{e:#}"),
    }
}

/// Installs the process-wide rustls crypto provider (ring) that every
/// reqwest client of this crate uses; call it before building any other
/// `reqwest::Client`. Installing it again is harmless.
pub fn install_tls_provider() {
    // The only error is "already installed", which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Whether a transport error is a TLS failure (an untrusted or invalid
/// certificate, a handshake refused): retrying cannot fix it.
pub fn is_tls_error(error: &reqwest_middleware::Error) -> bool {
    causes(error).any(|cause| cause.is::<rustls::Error>())
}

/// A transport error and its causes, outermost first. `io::Error::source`
/// skips the error an `io::Error` wraps (and a TLS error sits inside two of
/// them), so the walk steps into the wrapped error instead.
fn causes(
    error: &reqwest_middleware::Error,
) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
    let first: Option<&(dyn std::error::Error + 'static)> = match error {
        reqwest_middleware::Error::Reqwest(e) => Some(e),
        reqwest_middleware::Error::Middleware(_) => None,
    };
    std::iter::successors(first, |current| {
        match current
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => current.source(),
        }
    })
}

/// What [`NodeClient::send`] got: the last attempt's answer, with its body
/// (empty for a transport error), and what the attempts were.
struct Sent {
    result: reqwest_middleware::Result<Response>,
    attempts: Attempts,
    body: Vec<u8>,
}

struct NodeEntry {
    address: NodeAddress,
    name: Arc<str>,
    collection: Url,
    gate: Arc<NodeGate>,
}

/// HTTP access to every node of the cluster, indexed as in the configuration.
pub struct NodeClient {
    http: ClientWithMiddleware,
    nodes: Vec<NodeEntry>,
    tls_failure: std::sync::OnceLock<String>,
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host() == b.host()
        && a.port_or_known_default() == b.port_or_known_default()
}

impl NodeClient {
    pub fn new(settings: &ClientSettings, nodes: &[NodeAddress]) -> Result<Self, ClientError> {
        let mut headers = HeaderMap::new();
        if let Some(token) = &settings.auth_token {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .map_err(|_| ClientError::InvalidToken)?;
            // Keeps the value out of any debug output of the request.
            value.set_sensitive(true);
            headers.insert(http::header::AUTHORIZATION, value);
        }
        let redirects = reqwest::redirect::Policy::custom(|attempt| {
            let follow = attempt.previous().len() < MAX_REDIRECTS
                && attempt
                    .previous()
                    .first()
                    .is_some_and(|origin| same_origin(origin, attempt.url()));
            if follow {
                attempt.follow()
            } else {
                attempt.stop()
            }
        });
        install_tls_provider();
        let inner = reqwest::Client::builder()
            .tls_certs_merge(settings.ca_certificates.iter().cloned())
            .default_headers(headers)
            .timeout(settings.request_timeout)
            .connect_timeout(settings.connect_timeout)
            .redirect(redirects)
            .pool_max_idle_per_host(settings.node_concurrency.max(1))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| ClientError::Build(e.to_string()))?;
        let http = ClientBuilder::new(inner)
            .with(RetryAfterMiddleware::new(settings.retry))
            .with(GateMiddleware)
            .build();
        let nodes = nodes
            .iter()
            .map(|address| {
                let collection = address
                    .base
                    .join(GROUP_COLLECTION_PATH)
                    .map_err(|e| ClientError::Build(format!("{}: {e}", address.name)))?;
                Ok(NodeEntry {
                    name: Arc::from(address.name.as_str()),
                    address: address.clone(),
                    collection,
                    gate: Arc::new(NodeGate::new(
                        settings.node_concurrency,
                        settings.node_rate_limit,
                    )),
                })
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        Ok(Self {
            http,
            nodes,
            tls_failure: std::sync::OnceLock::new(),
        })
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// How logs and reports name node `index`.
    pub fn node_name(&self, index: usize) -> &str {
        self.nodes
            .get(index)
            .map_or("?", |n| n.address.name.as_str())
    }

    pub fn stats(&self) -> Vec<NodeStatsSnapshot> {
        self.nodes
            .iter()
            .map(|node| node.gate.stats.snapshot(&node.address.name))
            .collect()
    }

    fn entry(&self, index: usize) -> Result<&NodeEntry, String> {
        self.nodes
            .get(index)
            .ok_or_else(|| format!("no node with index {index}"))
    }

    async fn send(
        &self,
        node: &NodeEntry,
        builder: reqwest_middleware::RequestBuilder,
        stop: &CancellationToken,
    ) -> Sent {
        let mut extensions = Extensions::new();
        extensions.insert(GateRef(node.gate.clone()));
        extensions.insert(StopRetrying(stop.clone()));
        extensions.insert(NodeName(node.name.clone()));
        let request = match builder.build() {
            Ok(request) => request,
            Err(e) => {
                return Sent {
                    result: Err(e.into()),
                    attempts: Attempts::default(),
                    body: Vec::new(),
                }
            }
        };
        let result = self
            .http
            .execute_with_extensions(request, &mut extensions)
            .await;
        let attempts = extensions.get::<Attempts>().copied().unwrap_or_default();
        node.gate.stats.retries.fetch_add(
            u64::from(attempts.count.saturating_sub(1)),
            Ordering::Relaxed,
        );
        if let Err(error) = &result {
            if is_tls_error(error) {
                let _ = self
                    .tls_failure
                    .set(format!("{}: {}", node.name, describe_error(error)));
            }
        }
        let body = match (&result, extensions.remove::<AnswerBody>()) {
            (Ok(_), Some(AnswerBody(body))) => body,
            _ => Vec::new(),
        };
        Sent {
            result,
            attempts,
            body,
        }
    }

    /// The first TLS failure any request met (node and reason), if any: it
    /// will not go away by itself, so the run stops starting groups.
    pub fn tls_failure(&self) -> Option<&str> {
        self.tls_failure.get().map(String::as_str)
    }

    /// `POST /v1/group/` with `record` (normally `{"groupId": id}`; a delete's
    /// rollback re-creates the exact record it read before deleting).
    pub async fn create(
        &self,
        node: usize,
        record: &Value,
        stop: &CancellationToken,
    ) -> (WriteAnswer, Attempts) {
        self.write(node, Method::POST, record, StatusCode::CREATED, stop)
            .await
    }

    /// `DELETE /v1/group/` with `{"groupId": id}`.
    pub async fn delete(
        &self,
        node: usize,
        group: &GroupId,
        stop: &CancellationToken,
    ) -> (WriteAnswer, Attempts) {
        let body = GroupBody::new(group.as_str());
        self.write(node, Method::DELETE, &body, StatusCode::OK, stop)
            .await
    }

    async fn write<B: Serialize + ?Sized>(
        &self,
        node: usize,
        method: Method,
        body: &B,
        expected: StatusCode,
        stop: &CancellationToken,
    ) -> (WriteAnswer, Attempts) {
        let entry = match self.entry(node) {
            Ok(entry) => entry,
            Err(detail) => {
                let answer = WriteAnswer::Unresolved {
                    status: None,
                    detail,
                };
                return (answer, Attempts::default());
            }
        };
        let url = &entry.collection;
        let builder = self.http.request(method, url.clone()).json(body);
        let sent = self.send(entry, builder, stop).await;
        (write_answer(sent.result, expected, url), sent.attempts)
    }

    /// `GET /v1/group/<id>/`.
    pub async fn read(&self, node: usize, group: &GroupId, stop: &CancellationToken) -> ReadAnswer {
        let entry = match self.entry(node) {
            Ok(entry) => entry,
            Err(detail) => {
                return ReadAnswer::Failed {
                    status: None,
                    detail,
                }
            }
        };
        let url = item_url(&entry.collection, group);
        let sent = self.send(entry, self.http.get(url.clone()), stop).await;
        read_answer(sent.result, &sent.body, group, &url)
    }
}

/// The URL of `group`'s record under a node's collection URL. Only the path
/// changes, so the scheme and host the configuration already checked are
/// not parsed again for every read.
fn item_url(collection: &Url, group: &GroupId) -> Url {
    let mut url = collection.clone();
    let path = format!("{}{}/", collection.path(), group_segment(group.as_str()));
    url.set_path(&path);
    url
}

/// What an unexpected status says, in words: redirects the client did not
/// follow are told apart, since they point at a misconfigured node address.
fn describe_status(status: StatusCode, headers: &HeaderMap, url: &Url) -> String {
    if !status.is_redirection() {
        return format!("node answered {status}");
    }
    let location = headers
        .get(http::header::LOCATION)
        .and_then(|l| l.to_str().ok());
    match location.map(|l| url.join(l)) {
        Some(Ok(target)) if !same_origin(url, &target) => format!(
            "node answered {status}: a redirect to another host ({}://{}), not followed",
            target.scheme(),
            shortened(target.host_str().unwrap_or("?"))
        ),
        Some(Ok(_)) => format!("node answered {status}: more than {MAX_REDIRECTS} redirects"),
        Some(Err(_)) | None => format!("node answered {status} without a usable Location"),
    }
}

/// A node-chosen text cut to 64 characters, so a hostile answer cannot
/// make a log line long.
fn shortened(text: &str) -> String {
    const MAX_CHARS: usize = 64;
    let mut chars = text.chars();
    let mut shown: String = chars.by_ref().take(MAX_CHARS).collect();
    if chars.next().is_some() {
        shown.push('…');
    }
    shown
}

fn write_answer(
    result: reqwest_middleware::Result<Response>,
    expected: StatusCode,
    url: &Url,
) -> WriteAnswer {
    match result {
        Ok(response) => classify_write(response.status(), response.headers(), expected, url),
        Err(error) => WriteAnswer::Unresolved {
            status: None,
            detail: describe_error(&error),
        },
    }
}

/// The answer class of a write that got a response: only `expected` settles
/// it; anything else leaves it to a read-back.
pub fn classify_write(
    status: StatusCode,
    headers: &HeaderMap,
    expected: StatusCode,
    url: &Url,
) -> WriteAnswer {
    if status == expected {
        WriteAnswer::Applied
    } else {
        WriteAnswer::Unresolved {
            status: Some(status.as_u16()),
            detail: describe_status(status, headers, url),
        }
    }
}

fn read_answer(
    result: reqwest_middleware::Result<Response>,
    body: &[u8],
    group: &GroupId,
    url: &Url,
) -> ReadAnswer {
    let response = match result {
        Ok(response) => response,
        Err(error) => {
            return ReadAnswer::Failed {
                status: None,
                detail: describe_error(&error),
            }
        }
    };
    classify_read(response.status(), response.headers(), body, group, url)
}

/// The answer class of a read that got a response. Liberal in what it
/// accepts: a `200` for the group's own URL says the group exists whatever
/// the body, unless the body names another group.
pub fn classify_read(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    group: &GroupId,
    url: &Url,
) -> ReadAnswer {
    match status {
        StatusCode::OK => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(record)) => match record.get("groupId") {
                Some(Value::String(id)) if id == group.as_str() => {
                    ReadAnswer::Present(Value::Object(record))
                }
                Some(_) => ReadAnswer::Failed {
                    status: Some(200),
                    detail: "node returned a record for a different group id".to_string(),
                },
                None => ReadAnswer::Present(plain_record(group)),
            },
            _ => ReadAnswer::Present(plain_record(group)),
        },
        StatusCode::NOT_FOUND | StatusCode::GONE => ReadAnswer::Absent,
        _ => ReadAnswer::Failed {
            status: Some(status.as_u16()),
            detail: format!("{} to a read", describe_status(status, headers, url)),
        },
    }
}

/// The record a create sends: [`GroupBody`] as JSON, `{"groupId": id}`.
pub fn plain_record(group: &GroupId) -> Value {
    serde_json::json!({ "groupId": group.as_str() })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn latency_percentiles_are_within_one_percent() {
        let mut histogram = latency_histogram();
        for micros in 1..=10_000u64 {
            histogram.record(micros * 100).unwrap();
        }
        let latency = Latency::of(&histogram);
        assert!((latency.p50_ms - 500.0).abs() <= 5.0, "{latency:?}");
        assert!((latency.p99_ms - 990.0).abs() <= 10.0, "{latency:?}");
        assert!((latency.max_ms - 1000.0).abs() <= 10.0, "{latency:?}");
        assert_eq!(Latency::of(&latency_histogram()), Latency::default());
    }

    #[test]
    fn request_totals_merge_every_node() {
        let stats = [NodeStats::default(), NodeStats::default()];
        let ok = || -> reqwest_middleware::Result<Response> {
            Ok(Response::from(http::Response::new(Vec::<u8>::new())))
        };
        stats[0].record(&ok(), Duration::from_millis(2));
        stats[1].record(&ok(), Duration::from_millis(40));
        stats[1].retries.fetch_add(1, Ordering::Relaxed);
        let nodes: Vec<_> = stats.iter().map(|s| s.snapshot("n")).collect();
        let totals = RequestTotals::over(&nodes);
        assert_eq!((totals.requests, totals.retries), (2, 1));
        assert_eq!(count_of(&totals.statuses, "200"), 2);
        assert!(
            (totals.latency.p50_ms - 2.0).abs() < 0.1,
            "{:?}",
            totals.latency
        );
        assert!(
            (totals.latency.max_ms - 40.0).abs() < 0.5,
            "{:?}",
            totals.latency
        );
    }

    #[test]
    fn item_urls_match_the_api_paths() {
        let ids = ["g", "a/b?c#d%e f", "é", "..x", "~-_.", "%2F", "x y/"];
        for base in [
            "http://127.0.0.1:8080/",
            "https://node01.example.com/api/prefix/",
        ] {
            let base = Url::parse(base).unwrap();
            let collection = base.join(GROUP_COLLECTION_PATH).unwrap();
            for id in ids {
                let group = GroupId::unchecked(id);
                let joined = base.join(&crate::api::group_item_path(id)).unwrap();
                assert_eq!(item_url(&collection, &group), joined, "{id:?} under {base}");
            }
        }
    }

    fn count_of(map: &BTreeMap<String, u64>, key: &str) -> u64 {
        map.get(key).copied().unwrap_or(0)
    }
}
