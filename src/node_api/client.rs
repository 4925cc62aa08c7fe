//! [`NodeClient`]: the node API over HTTP, one answer class per call.
//!
//! A request passes two middlewares before reaching the network:
//!
//! 1. [`RetryAfterMiddleware`] retries transient answers with backoff and
//!    `Retry-After` ([`super::retry`]);
//! 2. the node's gate applies its limits to every attempt and reads the
//!    body ([`super::gate`]).
//!
//! What is left for the caller is a [`WriteAnswer`] or a [`ReadAnswer`]
//! ([`super::answers`]). Redirects are followed only to the same scheme,
//! host and port.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use http::{Extensions, HeaderMap, HeaderValue, Method, StatusCode};
use reqwest::Response;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::answers::{read_answer, step_answer, write_answer, ReadAnswer, StepAnswer, WriteAnswer};
use super::errors::{
    describe_error, install_tls_provider, is_tls_error, same_origin, MAX_REDIRECTS,
};
use super::gate::{
    cancelled_before_sending, AnswerBody, BodyLimit, GateMiddleware, GateRef, NodeGate,
};
use super::listing::{classify_list, ListAnswer, LIST_MAX_BYTES};
use super::retry::{Attempts, NodeName, RetryAfterMiddleware, RetrySettings, StopRetrying};
use super::stats::NodeStatsSnapshot;
use crate::domain::{GroupId, NodeAddress, Secret};
use node_contract::{
    group_segment, session_item_path, GroupBody, SessionCreateBody, SessionDeleteBody,
    GROUP_COLLECTION_PATH, GROUP_LIST_PATH, SESSION_CREATE_PATH,
};

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

/// What [`NodeClient::send`] got: the last attempt's answer, with its body
/// (empty for a transport error), and what the attempts were.
struct Sent {
    result: reqwest_middleware::Result<Response>,
    attempts: Attempts,
    body: Vec<u8>,
    /// The body went on past the request's limit.
    truncated: bool,
}

struct NodeEntry {
    address: NodeAddress,
    name: Arc<str>,
    collection: Url,
    gate: Arc<NodeGate>,
}

/// The shortest time one attempt of a list may take: up to
/// [`LIST_MAX_BYTES`] of body over a modest link.
pub const LIST_MIN_TIMEOUT: Duration = Duration::from_secs(60);

/// HTTP access to every node of the cluster, indexed as in the configuration.
pub struct NodeClient {
    http: ClientWithMiddleware,
    nodes: Vec<NodeEntry>,
    /// One attempt of a list, whose body may be far larger than any other
    /// answer: `REQUEST_TIMEOUT_MS`, but at least [`LIST_MIN_TIMEOUT`].
    list_timeout: Duration,
    tls_failure: std::sync::OnceLock<String>,
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
            // Retries are the job's own (`retry.rs`, with Retry-After and
            // the read-back rules); reqwest's layer would only clone every
            // request in case it retries.
            .retry(reqwest::retry::never().max_retries_per_request(0))
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
            list_timeout: settings.request_timeout.max(LIST_MIN_TIMEOUT),
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
        build: impl FnOnce() -> reqwest_middleware::RequestBuilder,
        stop: &CancellationToken,
        body_limit: Option<BodyLimit>,
    ) -> Sent {
        // The first attempt's slot is taken before the request is built.
        let Some(admitted) = node.gate.admit(stop).await else {
            return Sent {
                result: Err(cancelled_before_sending()),
                attempts: Attempts::default(),
                body: Vec::new(),
                truncated: false,
            };
        };
        let mut extensions = Extensions::new();
        extensions.insert(admitted);
        extensions.insert(GateRef(node.gate.clone()));
        if let Some(limit) = body_limit {
            extensions.insert(limit);
        }
        extensions.insert(StopRetrying(stop.clone()));
        extensions.insert(NodeName(node.name.clone()));
        let request = match build().build() {
            Ok(request) => request,
            Err(e) => {
                return Sent {
                    result: Err(e.into()),
                    attempts: Attempts::default(),
                    body: Vec::new(),
                    truncated: false,
                }
            }
        };
        let result = self
            .http
            .execute_with_extensions(request, &mut extensions)
            .await;
        let attempts = extensions.get::<Attempts>().copied().unwrap_or_default();
        node.gate
            .stats
            .add_retries(u64::from(attempts.count.saturating_sub(1)));
        if let Err(error) = &result {
            if is_tls_error(error) {
                let _ = self
                    .tls_failure
                    .set(format!("{}: {}", node.name, describe_error(error)));
            }
        }
        let (body, truncated) = match (&result, extensions.remove::<AnswerBody>()) {
            (Ok(_), Some(body)) => (body.bytes, body.truncated),
            _ => (Vec::new(), false),
        };
        Sent {
            result,
            attempts,
            body,
            truncated,
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

    /// Two-phase protocol: `POST /v1/group` with `{"groupId", "sessionId"}`.
    /// The first call of `session` for the group records an intention; the
    /// same call again commits it (docs/TWO_PHASE.md).
    pub async fn session_create(
        &self,
        node: usize,
        group: &GroupId,
        session: &str,
        stop: &CancellationToken,
    ) -> (StepAnswer, Attempts) {
        let body = SessionCreateBody {
            group_id: group.as_str().to_owned(),
            session_id: session.to_owned(),
        };
        self.session_step(
            node,
            Method::POST,
            SESSION_CREATE_PATH.to_owned(),
            &body,
            stop,
        )
        .await
    }

    /// Two-phase protocol: `DELETE /v1/group/<id>` with `{"sessionId"}`, in
    /// the same two steps as [`NodeClient::session_create`].
    pub async fn session_delete(
        &self,
        node: usize,
        group: &GroupId,
        session: &str,
        stop: &CancellationToken,
    ) -> (StepAnswer, Attempts) {
        let body = SessionDeleteBody {
            session_id: session.to_owned(),
        };
        let path = session_item_path(group.as_str());
        self.session_step(node, Method::DELETE, path, &body, stop)
            .await
    }

    async fn session_step<B: Serialize + ?Sized>(
        &self,
        node: usize,
        method: Method,
        path: String,
        body: &B,
        stop: &CancellationToken,
    ) -> (StepAnswer, Attempts) {
        let failed = |detail: String| StepAnswer::Failed {
            status: None,
            detail,
        };
        let entry = match self.entry(node) {
            Ok(entry) => entry,
            Err(detail) => return (failed(detail), Attempts::default()),
        };
        let url = match entry.address.base.join(&path) {
            Ok(url) => url,
            Err(e) => return (failed(e.to_string()), Attempts::default()),
        };
        let build = || self.http.request(method, url.clone()).json(body);
        let sent = self.send(entry, build, stop, None).await;
        (step_answer(sent.result, &sent.body, &url), sent.attempts)
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
        let build = || self.http.request(method, url.clone()).json(body);
        let sent = self.send(entry, build, stop, None).await;
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
        let sent = self
            .send(entry, || self.http.get(url.clone()), stop, None)
            .await;
        read_answer(sent.result, &sent.body, group, &url)
    }

    /// `GET /v1/groups`: every group the node holds, read up to
    /// [`LIST_MAX_BYTES`].
    pub async fn list(&self, node: usize, stop: &CancellationToken) -> ListAnswer {
        let entry = match self.entry(node) {
            Ok(entry) => entry,
            Err(detail) => {
                return ListAnswer::Failed {
                    status: None,
                    detail,
                }
            }
        };
        let url = match entry.address.base.join(GROUP_LIST_PATH) {
            Ok(url) => url,
            Err(e) => {
                return ListAnswer::Failed {
                    status: None,
                    detail: e.to_string(),
                }
            }
        };
        let limit = Some(BodyLimit(LIST_MAX_BYTES));
        let build = || self.http.get(url).timeout(self.list_timeout);
        let sent = self.send(entry, build, stop, limit).await;
        match sent.result {
            Ok(response) => classify_list(response.status(), sent.body, sent.truncated),
            Err(error) => ListAnswer::Failed {
                status: None,
                detail: describe_error(&error),
            },
        }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use node_contract::group_item_path;

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
                let joined = base.join(&group_item_path(id)).unwrap();
                assert_eq!(item_url(&collection, &group), joined, "{id:?} under {base}");
            }
        }
    }
}
