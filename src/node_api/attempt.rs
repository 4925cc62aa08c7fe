//! The middleware every attempt of every call passes: it reads the answer's
//! body (capped, so that a node cannot make the job buffer without bound,
//! and inside the attempt, so that a reset in the middle of a body is one
//! more transport error of this attempt) and counts and times the attempt
//! in its node's statistics.
//!
//! It is the only layer of the client's middleware chain, and the request's
//! extensions carry exactly two things through it: `AttemptOf` in (whose
//! statistics, how much body) and `AnswerBody` out.

use std::sync::Arc;
use std::time::Instant;

use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};

use super::stats::NodeStats;

/// Bodies are read up to this size unless a call says otherwise; node
/// answers are tiny, so anything larger is cut off rather than buffered.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Request extension: the node whose statistics count the attempt, and how
/// much of the answer's body to read.
#[derive(Clone)]
pub(super) struct AttemptOf {
    pub(super) stats: Arc<NodeStats>,
    pub(super) body_limit: usize,
}

/// Request extension: the body of the attempt's answer. The response itself
/// is handed on with its body consumed: rebuilding a `reqwest::Response`
/// around the bytes would cost a URL parse per answer.
#[derive(Clone, Default)]
pub(super) struct AnswerBody {
    pub(super) bytes: Vec<u8>,
    /// The answer went on past the limit; `bytes` holds its start.
    pub(super) truncated: bool,
}

pub(super) struct ReadAndCount;

#[async_trait::async_trait]
impl Middleware for ReadAndCount {
    async fn handle(
        &self,
        req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let Some(of) = extensions.get::<AttemptOf>().cloned() else {
            return next.run(req, extensions).await;
        };
        let sent = Instant::now();
        let result = match next.run(req, extensions).await {
            Ok(mut response) => read_body(&mut response, of.body_limit).await.map(|body| {
                extensions.insert(body);
                response
            }),
            Err(error) => Err(error),
        };
        of.stats.record(&result, sent.elapsed());
        result
    }
}

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
