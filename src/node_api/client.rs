//! [`NodeClient`]: the node API over HTTP, one answer class per call, and
//! the one path every request takes (`NodeClient::send`):
//!
//! 1. a slot of the node's `NodeGate` (its health, `429` pause, rate limit
//!    and adaptive concurrency), taken before the request is built;
//! 2. the attempt, through reqwest-middleware's chain, whose one layer
//!    (`ReadAndCount`) reads the capped body and counts the attempt;
//! 3. the answer handed to the node's health and limit, and the retry
//!    decision (`Retry`: the retry crate's classification and backoff, and
//!    the node's `Retry-After`), unless the caller's stop token has fired; an
//!    attempt that failed while its node is down does not count against
//!    `MAX_RETRIES` (up to `MAX_RETRIES` such attempts): the request waits
//!    for the node instead (the gate);
//! 4. what the caller gets: the last attempt's answer and body, or the
//!    transport error that ended the request in words (the first TLS failure
//!    also kept for the run), and what the attempts were (`Attempts`); each
//!    call classifies the answer with [`super::answers`].
//!
//! Nodes are named by [`Node`] handles that only the client hands out, so
//! no call can name a node it does not know. Redirects are followed only to
//! the same scheme, host and port.

use std::borrow::Cow;
use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use http::{Extensions, HeaderMap, HeaderValue, Method, StatusCode};
use node_contract::{
    group_segment, SessionCreateBody, SessionDeleteBody, GROUP_COLLECTION_PATH, GROUP_LIST_PATH,
    SESSION_CREATE_PATH,
};
use reqwest::{Request, Response};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, RequestBuilder};
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::answers::{
    classify_read, classify_step, classify_write, plain_record, ReadAnswer, StepAnswer, WriteAnswer,
};
use super::attempt::{AnswerBody, AttemptOf, ReadAndCount, MAX_BODY_BYTES};
use super::capacity::Signal;
use super::errors::{
    describe_error, install_tls_provider, is_tls_error, same_origin, MAX_REDIRECTS,
};
use super::gate::NodeGate;
use super::health::{probe_delay, HealthSettings, NodeHealth, NodeState, Unusable, Verdict};
use super::listing::{classify_list, ListAnswer, LIST_MAX_BYTES};
use super::retry::{is_transient, parse_retry_after, Attempts, Retry, RetrySettings};
use super::stats::{NodeStats, NodeStatsSnapshot};
use crate::domain::{Change, GroupId, NodeAddress, Secret};

/// The target of the retry lines, which `LOG_LEVEL` directives name
/// (`api_consumer::retry=debug`): part of the log interface.
const RETRY_LOG_TARGET: &str = "api_consumer::retry";

/// Client settings taken from the configuration.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// How long a node may take to apply a write whose answer was lost
    /// (`WRITE_SETTLE_MS`).
    pub write_settle: Duration,
    pub retry: RetrySettings,
    pub auth_token: Option<Secret>,
    pub node_concurrency: usize,
    pub node_rate_limit: Option<NonZeroU32>,
    /// When nodes go down and how long the run waits for them.
    pub health: HealthSettings,
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

/// One node of the cluster, as the client knows it, with the URLs of its
/// calls joined once.
pub struct Node {
    address: NodeAddress,
    /// `v1/group/`: the standard protocol's writes, and the parent of every
    /// group's URL.
    collection: Url,
    /// `v1/groups`.
    list: Url,
    /// `v1/group`: the two-phase protocol's create.
    session: Url,
    gate: NodeGate,
    stats: Arc<NodeStats>,
}

impl Node {
    /// How logs and reports name the node: its base URL.
    pub fn name(&self) -> &str {
        &self.address.name
    }
}

/// The body of a two-phase call.
#[derive(Serialize)]
#[serde(untagged)]
enum SessionBody {
    Create(SessionCreateBody),
    Delete(SessionDeleteBody),
}

/// What [`NodeClient::send`] got: the last attempt's answer with its body,
/// or the transport error that ended the request in words, and what the
/// attempts were.
struct Sent {
    result: Result<(Response, AnswerBody), String>,
    attempts: Attempts,
}

/// The error of a request that was not sent: its run stopped while it
/// waited for its node, or the node is down and the run no longer waits.
fn not_sent(why: Unusable) -> reqwest_middleware::Error {
    let error = match why {
        Unusable::Stopped => anyhow::anyhow!("cancelled before sending"),
        Unusable::Down(text) => anyhow::anyhow!(text),
    };
    reqwest_middleware::Error::Middleware(error)
}

/// The group a probe of a down node reads: any answer but a `5xx` (`404`
/// most likely) shows the node serves again.
pub const PROBE_GROUP: &str = "api-consumer-probe";

/// What an attempt's result says of its node's health and capacity.
fn judge(result: &reqwest_middleware::Result<Response>, latency: Duration) -> (Verdict, Signal) {
    match result {
        Ok(response) => {
            let status = response.status();
            if status == StatusCode::SERVICE_UNAVAILABLE {
                (Verdict::Unavailable(status.to_string()), Signal::Dropped)
            } else if status.is_server_error() {
                (Verdict::Failure(status.to_string()), Signal::None)
            } else if status == StatusCode::TOO_MANY_REQUESTS {
                (Verdict::Success, Signal::Dropped)
            } else {
                (Verdict::Success, Signal::Answered { latency })
            }
        }
        Err(reqwest_middleware::Error::Middleware(_)) => (Verdict::Neutral, Signal::None),
        Err(error) => {
            let timeout = matches!(error, reqwest_middleware::Error::Reqwest(e) if e.is_timeout());
            let signal = if timeout {
                Signal::Dropped
            } else {
                Signal::None
            };
            (Verdict::Failure(describe_error(error)), signal)
        }
    }
}

/// The shortest time one attempt of a list may take: up to
/// [`LIST_MAX_BYTES`] of body over a modest link.
pub const LIST_MIN_TIMEOUT: Duration = Duration::from_secs(60);

/// HTTP access to every node of the cluster, in the configuration's order.
pub struct NodeClient {
    http: ClientWithMiddleware,
    nodes: Vec<Node>,
    retry: Retry,
    /// One attempt of a list, whose body may be far larger than any other
    /// answer: `REQUEST_TIMEOUT_MS`, but at least [`LIST_MIN_TIMEOUT`].
    list_timeout: Duration,
    write_settle: Duration,
    tls_failure: OnceLock<String>,
    /// Bumped on every state change of any node's health.
    health_changes: Arc<tokio::sync::watch::Sender<u64>>,
    /// Ends the probes of down nodes when the client goes.
    probes: CancellationToken,
}

impl Drop for NodeClient {
    fn drop(&mut self) {
        self.probes.cancel();
    }
}

/// The nodes of a run that are not up.
#[derive(Debug, Default)]
pub struct NodesDown<'a> {
    /// Down, and the run waits for them.
    pub waiting: Vec<&'a str>,
    /// Down, and the run no longer waits (node, why it went down).
    pub given_up: Vec<(&'a str, String)>,
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
            // Retries are the job's own (`send`, with Retry-After and the
            // read-back rules); reqwest's layer would only clone every
            // request in case it retries.
            .retry(reqwest::retry::never().max_retries_per_request(0))
            .pool_max_idle_per_host(settings.node_concurrency.max(1))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| ClientError::Build(e.to_string()))?;
        let http = ClientBuilder::new(inner).with(ReadAndCount).build();
        let health_changes = Arc::new(tokio::sync::watch::Sender::new(0));
        let nodes = nodes
            .iter()
            .map(|address| {
                let join = |path| {
                    let url = address.base.join(path);
                    url.map_err(|e| ClientError::Build(format!("{}: {e}", address.name)))
                };
                Ok(Node {
                    address: address.clone(),
                    collection: join(GROUP_COLLECTION_PATH)?,
                    list: join(GROUP_LIST_PATH)?,
                    session: join(SESSION_CREATE_PATH)?,
                    gate: NodeGate::new(
                        settings.node_concurrency,
                        settings.node_rate_limit,
                        Arc::new(NodeHealth::new(
                            &address.name,
                            settings.health,
                            health_changes.clone(),
                        )),
                    ),
                    stats: Arc::default(),
                })
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        Ok(Self {
            http,
            nodes,
            retry: Retry::new(settings.retry),
            list_timeout: settings.request_timeout.max(LIST_MIN_TIMEOUT),
            write_settle: settings.write_settle,
            tls_failure: OnceLock::new(),
            health_changes,
            probes: CancellationToken::new(),
        })
    }

    /// A receiver that sees every state change of any node's health.
    pub fn health_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.health_changes.subscribe()
    }

    /// Whether any node is down now (no lock taken).
    pub fn any_down(&self) -> bool {
        self.nodes.iter().any(|node| node.gate.health().is_down())
    }

    /// The nodes that are down now.
    pub fn nodes_down(&self) -> NodesDown<'_> {
        let mut down = NodesDown::default();
        for node in &self.nodes {
            let health = node.gate.health();
            if health.given_up() {
                let reason = health.snapshot().down_reason.unwrap_or_default();
                down.given_up.push((node.name(), reason));
            } else if health.is_down() {
                down.waiting.push(node.name());
            }
        }
        down
    }

    /// Probes a node that just went down with a read, after a jittered
    /// backoff, one probe at a time, until it answers (the node is up) or the
    /// run stops waiting for it.
    fn start_probe(&self, node: &Node) {
        let health = node.gate.health().clone();
        if !health.claim_probe() {
            // The node's probe task is still running: it probes this time
            // down too.
            return;
        }
        let http = self.http.clone();
        let url = group_url(&node.collection, &GroupId::unchecked(PROBE_GROUP), "/");
        let stats = node.stats.clone();
        let closing = self.probes.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = closing.cancelled() => return health.release_probe(),
                    _ = probe(&health, &http, url.clone(), stats.clone()) => {}
                }
                health.release_probe();
                // Down again between the probe's last look and its release:
                // this task probes that time too.
                if !(health.is_down() && !health.given_up() && health.claim_probe()) {
                    return;
                }
            }
        });
    }

    /// Every node, in the configuration's order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn stats(&self) -> Vec<NodeStatsSnapshot> {
        self.nodes
            .iter()
            .map(|node| {
                let mut snapshot = node.stats.snapshot(node.name());
                let health = node.gate.health().snapshot();
                snapshot.health = (health.times_down > 0).then_some(health);
                snapshot
            })
            .collect()
    }

    /// The first TLS failure any request met (node and reason), if any: it
    /// will not go away by itself, so the run stops starting groups.
    pub fn tls_failure(&self) -> Option<&str> {
        self.tls_failure.get().map(String::as_str)
    }

    /// The one path of every request; see the module documentation. No
    /// attempt starts once `stop` has fired; one already on the wire is left
    /// to finish (or time out), because dropping the connection would not
    /// stop a node from applying it.
    async fn send(
        &self,
        node: &Node,
        build: impl FnOnce() -> RequestBuilder,
        stop: &CancellationToken,
        body_limit: usize,
    ) -> Sent {
        let mut attempts = Attempts::default();
        let mut body = AnswerBody::default();
        let result = 'sent: {
            // The first attempt's slot is taken before the request is built:
            // a request waiting for its node holds nothing but this wait.
            let mut slot = match node.gate.admit(stop).await {
                Ok(slot) => slot,
                Err(why) => break 'sent Err(not_sent(why)),
            };
            let request = match build().build() {
                Ok(request) => request,
                Err(error) => break 'sent Err(error.into()),
            };
            let started = SystemTime::now();
            // Attempts that failed while the node was down: not retries the
            // budget pays for.
            let mut waited_out = 0;
            loop {
                // Bodies are JSON bytes, so a request always clones.
                let Some(attempt) = request.try_clone() else {
                    let error = anyhow::anyhow!("request body cannot be replayed for a retry");
                    break Err(reqwest_middleware::Error::Middleware(error));
                };
                let mut extensions = Extensions::new();
                extensions.insert(AttemptOf {
                    stats: node.stats.clone(),
                    body_limit,
                });
                let result = self
                    .http
                    .execute_with_extensions(attempt, &mut extensions)
                    .await;
                // The node cannot have received the attempt after the job
                // stopped waiting for it, however long connecting and
                // sending took: a lost write's window counts from here.
                let ended = Instant::now();
                let (verdict, signal) = judge(&result, ended - slot.sent());
                if slot.answered(verdict, signal, ended) {
                    self.start_probe(node);
                }
                body = extensions.remove::<AnswerBody>().unwrap_or_default();
                attempts.add(&result, ended, self.write_settle);
                let answer = result.as_ref().ok();
                let retry_after =
                    answer.and_then(|a| parse_retry_after(a.headers(), SystemTime::now()));
                let throttled = answer.is_some_and(|a| a.status() == StatusCode::TOO_MANY_REQUESTS);
                if let (true, Some(delay)) = (throttled, retry_after) {
                    node.gate.pause_for(delay);
                }
                if stop.is_cancelled() {
                    break result;
                }
                let free = waited_out < self.retry.max_retries();
                let wait = if free && is_transient(&result) && node.gate.health().is_down() {
                    // The gate holds the next attempt until the node is back
                    // (or the run stops waiting for it). At most
                    // `MAX_RETRIES` such attempts per request, so that a node
                    // that goes down and up again and again cannot keep one
                    // request going for ever.
                    waited_out += 1;
                    Duration::ZERO
                } else {
                    let retries = attempts.count - 1 - waited_out;
                    let Some(wait) = self.retry.wait(started, retries, &result, retry_after) else {
                        break result;
                    };
                    log_retry(node, &request, &attempts, &result, wait, retry_after);
                    wait
                };
                tokio::select! {
                    _ = stop.cancelled() => break result,
                    _ = tokio::time::sleep(wait) => {}
                }
                slot = match node.gate.admit(stop).await {
                    Ok(next) => next,
                    Err(why) => {
                        // The attempt that could not start is counted,
                        // unapplied; the words keep what the last one sent
                        // got.
                        let why = match why {
                            Unusable::Down(text) => Unusable::Down(format!(
                                "{text}; {} attempts were sent before, the last answered: {}",
                                attempts.count,
                                answer_text(&result)
                            )),
                            Unusable::Stopped => Unusable::Stopped,
                        };
                        let result = Err(not_sent(why));
                        attempts.add(&result, Instant::now(), self.write_settle);
                        break result;
                    }
                };
            }
        };
        node.stats
            .add_retries(u64::from(attempts.count.saturating_sub(1)));
        let result = result.map(|response| (response, body)).map_err(|error| {
            let detail = describe_error(&error);
            if is_tls_error(&error) {
                let _ = self.tls_failure.set(format!("{}: {detail}", node.name()));
            }
            detail
        });
        Sent { result, attempts }
    }

    /// The standard protocol's write of `change`: `POST /v1/group/` with
    /// `record` (by default `{"groupId": id}`; a delete's rollback re-creates
    /// the exact record it read before deleting), or `DELETE /v1/group/` with
    /// `{"groupId": id}`.
    pub async fn write(
        &self,
        node: &Node,
        change: Change,
        group: &GroupId,
        record: Option<&Value>,
        stop: &CancellationToken,
    ) -> (WriteAnswer, Attempts) {
        let (method, expected) = match change {
            Change::Create => (Method::POST, StatusCode::CREATED),
            Change::Delete => (Method::DELETE, StatusCode::OK),
        };
        let body = match record {
            Some(record) if change == Change::Create => Cow::Borrowed(record),
            _ => Cow::Owned(plain_record(group)),
        };
        let url = &node.collection;
        let build = || self.http.request(method, url.clone()).json(&body);
        let sent = self.send(node, build, stop, MAX_BODY_BYTES).await;
        let answer = match sent.result {
            Ok((response, _)) => {
                classify_write(response.status(), response.headers(), expected, url)
            }
            Err(detail) => WriteAnswer::unresolved(None, detail),
        };
        (answer, sent.attempts)
    }

    /// The two-phase protocol's call for `change` in `session`: `POST
    /// /v1/group` with `{"groupId", "sessionId"}`, or `DELETE /v1/group/<id>`
    /// with `{"sessionId"}`. The first call of a session for the group
    /// records an intention; the same call again commits it
    /// (docs/TWO_PHASE.md).
    pub async fn session_step(
        &self,
        node: &Node,
        change: Change,
        group: &GroupId,
        session: &str,
        stop: &CancellationToken,
    ) -> (StepAnswer, Attempts) {
        let session_id = session.to_owned();
        let (method, url, body) = match change {
            Change::Create => {
                let group_id = group.as_str().to_owned();
                let body = SessionBody::Create(SessionCreateBody {
                    group_id,
                    session_id,
                });
                (Method::POST, node.session.clone(), body)
            }
            Change::Delete => {
                let body = SessionBody::Delete(SessionDeleteBody { session_id });
                (Method::DELETE, group_url(&node.collection, group, ""), body)
            }
        };
        let build = || self.http.request(method, url.clone()).json(&body);
        let sent = self.send(node, build, stop, MAX_BODY_BYTES).await;
        let answer = match sent.result {
            Ok((response, body)) => {
                classify_step(response.status(), response.headers(), &body.bytes, &url)
            }
            Err(detail) => StepAnswer::failed(None, detail),
        };
        (answer, sent.attempts)
    }

    /// `GET /v1/group/<id>/`.
    pub async fn read(&self, node: &Node, group: &GroupId, stop: &CancellationToken) -> ReadAnswer {
        let url = group_url(&node.collection, group, "/");
        let build = || self.http.get(url.clone());
        match self.send(node, build, stop, MAX_BODY_BYTES).await.result {
            Ok((response, body)) => classify_read(
                response.status(),
                response.headers(),
                &body.bytes,
                group,
                &url,
            ),
            Err(detail) => ReadAnswer::failed(None, detail),
        }
    }

    /// `GET /v1/groups`: every group the node holds, read up to
    /// [`LIST_MAX_BYTES`].
    pub async fn list(&self, node: &Node, stop: &CancellationToken) -> ListAnswer {
        let build = || self.http.get(node.list.clone()).timeout(self.list_timeout);
        match self.send(node, build, stop, LIST_MAX_BYTES).await.result {
            Ok((response, body)) => classify_list(response.status(), body.bytes, body.truncated),
            Err(detail) => ListAnswer::failed(None, detail),
        }
    }
}

/// The probe loop of [`NodeClient::start_probe`].
async fn probe(health: &NodeHealth, http: &ClientWithMiddleware, url: Url, stats: Arc<NodeStats>) {
    let mut probes = 0;
    let mut episode = health.times_down();
    let mut delay = probe_delay(probes, rand::random());
    loop {
        let Some(deadline) = health.deadline() else {
            return;
        };
        if health.times_down() != episode {
            // Down again since the last probe: the backoff starts over.
            episode = health.times_down();
            probes = 0;
            delay = probe_delay(probes, rand::random());
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = tokio::time::sleep_until(deadline) => return health.give_up(),
        }
        if !health.probe_sent(delay) {
            return;
        }
        probes += 1;
        let mut extensions = Extensions::new();
        extensions.insert(AttemptOf {
            stats: stats.clone(),
            body_limit: MAX_BODY_BYTES,
        });
        let next = probe_delay(probes, rand::random());
        let request = match http.get(url.clone()).build() {
            Ok(request) => request,
            Err(error) => {
                health.probe_answered(Err(error.to_string()), next);
                delay = next;
                continue;
            }
        };
        let result = tokio::select! {
            result = http.execute_with_extensions(request, &mut extensions) => result,
            _ = tokio::time::sleep_until(deadline) => return health.give_up(),
        };
        let text = answer_text(&result);
        let served = result.as_ref().is_ok_and(|r| !r.status().is_server_error());
        let answer = if served { Ok(text) } else { Err(text) };
        health.probe_answered(answer, next);
        if health.state() == NodeState::Up {
            return;
        }
        delay = next;
    }
}

/// An attempt's answer in words: its status, or its transport error.
fn answer_text(result: &reqwest_middleware::Result<Response>) -> String {
    match result {
        Ok(response) => response.status().to_string(),
        Err(error) => describe_error(error),
    }
}

/// One line per retry: the node, the call, the answer and the wait.
fn log_retry(
    node: &Node,
    request: &Request,
    attempts: &Attempts,
    result: &reqwest_middleware::Result<Response>,
    wait: Duration,
    retry_after: Option<Duration>,
) {
    let status = result.as_ref().ok().map(|r| r.status().as_u16());
    let reason = answer_text(result);
    let retry_after_ms = retry_after.map(|d| d.as_millis() as u64);
    tracing::info!(target: RETRY_LOG_TARGET, node = node.name(), method = %request.method(),
        attempt = attempts.count, status, reason = %reason, retry_after_ms,
        delay_ms = wait.as_millis() as u64, "transient answer, retrying after backoff");
}

/// The URL of `group` under a node's collection URL, followed by `end`:
/// `v1/group/<id>/` (its record) with `"/"`, `v1/group/<id>` (the two-phase
/// delete) with `""`. Only the path changes, so the scheme and host the
/// configuration already checked are not parsed again for every call.
fn group_url(collection: &Url, group: &GroupId, end: &str) -> Url {
    let mut url = collection.clone();
    let segment = group_segment(group.as_str());
    url.set_path(&format!("{}{segment}{end}", collection.path()));
    url
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use node_contract::{group_item_path, session_item_path};

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
                let item = base.join(&group_item_path(id)).unwrap();
                assert_eq!(
                    group_url(&collection, &group, "/"),
                    item,
                    "{id:?} under {base}"
                );
                let session_item = base.join(&session_item_path(id)).unwrap();
                let url = group_url(&collection, &group, "");
                assert_eq!(url, session_item, "{id:?} under {base}");
            }
        }
    }
}
