//! The limits every attempt against one node passes, as a middleware that
//! sits inside the retry layer (so each retry is admitted again): a pause
//! after a `429` (so other groups do not hammer a throttling node), the
//! `NODE_RATE_LIMIT` pacing and the `NODE_CONCURRENCY` slots. The gate also
//! reads the answer's body (capped at [`MAX_BODY_BYTES`]), so that a reset
//! in the middle of a body is one more transient attempt.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::{Extensions, StatusCode};
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::retry::{parse_retry_after, StopRetrying};
use super::stats::NodeStats;

/// Bodies are read up to this size; node answers are tiny, so anything larger
/// is cut off rather than buffered.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The limits applied to every attempt against one node.
pub struct NodeGate {
    permits: Arc<Semaphore>,
    rate: Option<DefaultDirectRateLimiter>,
    paused_until: Mutex<Option<Instant>>,
    pub(super) stats: NodeStats,
}

impl NodeGate {
    pub(super) fn new(concurrency: usize, rate: Option<NonZeroU32>) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
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
    /// `None` when `stop` fires first, or the gate is closed.
    pub(super) async fn admit(&self, stop: &CancellationToken) -> Option<Admitted> {
        tokio::select! {
            biased;
            _ = stop.cancelled() => None,
            permit = async {
                self.wait_unpaused().await;
                if let Some(rate) = &self.rate {
                    rate.until_ready().await;
                }
                self.permits.clone().acquire_owned().await.ok()
            } => permit.map(|permit| Admitted(Arc::new(Mutex::new(Some(permit))))),
        }
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
pub(super) struct GateRef(pub(super) Arc<NodeGate>);

/// Extension: a slot of the node's gate taken before the request was built,
/// for its first attempt. A request waiting for its node thus holds no
/// request, body or middleware state, only this wait; retries are admitted
/// again by the gate.
#[derive(Clone)]
pub(super) struct Admitted(Arc<Mutex<Option<OwnedSemaphorePermit>>>);

impl Admitted {
    fn take(&self) -> Option<OwnedSemaphorePermit> {
        self.0.lock().ok().and_then(|mut permit| permit.take())
    }
}

/// Applies per-node limits to each attempt and buffers the (capped) body.
pub(super) struct GateMiddleware;

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
        let admitted = extensions.remove::<Admitted>().and_then(|a| a.take());
        let _permit = match admitted {
            Some(permit) => permit,
            None => {
                let stop = extensions
                    .get::<StopRetrying>()
                    .map(|s| s.0.clone())
                    .unwrap_or_default();
                gate.admit(&stop)
                    .await
                    .and_then(|admitted| admitted.take())
                    .ok_or_else(cancelled_before_sending)?
            }
        };
        extensions.remove::<AnswerBody>();
        let limit = extensions
            .get::<BodyLimit>()
            .map_or(MAX_BODY_BYTES, |limit| limit.0);
        let sent = Instant::now();
        let result = match next.run(req, extensions).await {
            Ok(mut response) => read_body(&mut response, limit).await.map(|body| {
                extensions.insert(body);
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

/// The error of a request whose run stopped while it waited for its node.
pub(super) fn cancelled_before_sending() -> reqwest_middleware::Error {
    reqwest_middleware::Error::Middleware(anyhow::anyhow!("cancelled before sending"))
}

/// Request extension: the body of the last attempt's answer, as the gate
/// read it. The response itself is handed on with its body consumed:
/// rebuilding a `reqwest::Response` around the bytes would cost a URL parse
/// per answer.
#[derive(Clone)]
pub(super) struct AnswerBody {
    pub(super) bytes: Vec<u8>,
    /// The answer went on past the limit; `bytes` holds its start.
    pub(super) truncated: bool,
}

/// Request extension: how much of the answer's body to read, when not
/// [`MAX_BODY_BYTES`] (a node's list of groups).
#[derive(Clone, Copy)]
pub(super) struct BodyLimit(pub(super) usize);

/// Reads the body up to `limit` bytes, so that a body that fails midway is
/// an error of this attempt, and one that goes on past the limit is cut off
/// rather than buffered.
async fn read_body(
    response: &mut Response,
    limit: usize,
) -> reqwest_middleware::Result<AnswerBody> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok(AnswerBody {
                bytes,
                truncated: true,
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(AnswerBody {
        bytes,
        truncated: false,
    })
}
