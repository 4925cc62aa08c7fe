//! One simulated node: its state, its fault dice and its HTTP routes.
//!
//! Everything a request reads or changes sits behind one mutex per node, so
//! each call is atomic: of many concurrent creates of one id exactly one gets
//! `201`. The lock is never held across an await; injected waits happen
//! outside it.
//!
//! A write runs in a task of its own, as on a server with a thread or task
//! per request: a client that gives up (its connection closed, the handler
//! dropped) does not stop it, and it lands when it would have had the client
//! stayed. Its answer then has nowhere to go and is counted in
//! `undelivered_writes` instead of `responses`.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use governor::clock::Clock;
use rand::Rng;
use serde_json::json;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::api::NodeOp;
use super::api::{Faults, FaultsPatch, SimState};
use super::memory::{limiter, lock, NodeMemory};
use super::store::Store;
use super::two_phase::{self, IntentionOp, Protocol, Step};
use super::SimError;
use node_contract::{GroupBody, SessionCreateBody, SessionDeleteBody};

pub(crate) fn validate_faults(faults: &Faults) -> Result<(), String> {
    let rates = [
        ("fail_rate", faults.fail_rate),
        ("ambiguous_rate", faults.ambiguous_rate),
        ("unavailable_rate", faults.unavailable_rate),
        ("throttle_rate", faults.throttle_rate),
        ("timeout_rate", faults.timeout_rate),
    ];
    for (name, rate) in rates {
        if !(0.0..=1.0).contains(&rate) {
            return Err(format!("{name} must be between 0 and 1, got {rate}"));
        }
    }
    Ok(())
}

fn patched(faults: &Faults, patch: FaultsPatch) -> Result<Faults, String> {
    let mut next = faults.clone();
    let FaultsPatch {
        fail_rate,
        ambiguous_rate,
        unavailable_rate,
        throttle_rate,
        retry_after_secs,
        timeout_rate,
        hang_ms,
        latency_ms,
        write_latency_ms,
        jitter_ms,
        rate_limit,
        fail_ops,
        max_in_flight,
        protocol,
    } = patch;
    next.fail_rate = fail_rate.unwrap_or(next.fail_rate);
    next.ambiguous_rate = ambiguous_rate.unwrap_or(next.ambiguous_rate);
    next.unavailable_rate = unavailable_rate.unwrap_or(next.unavailable_rate);
    next.throttle_rate = throttle_rate.unwrap_or(next.throttle_rate);
    next.retry_after_secs = retry_after_secs.unwrap_or(next.retry_after_secs);
    next.timeout_rate = timeout_rate.unwrap_or(next.timeout_rate);
    next.hang_ms = hang_ms.unwrap_or(next.hang_ms);
    next.latency_ms = latency_ms.unwrap_or(next.latency_ms);
    next.write_latency_ms = write_latency_ms.unwrap_or(next.write_latency_ms);
    next.jitter_ms = jitter_ms.unwrap_or(next.jitter_ms);
    next.rate_limit = rate_limit.unwrap_or(next.rate_limit);
    next.fail_ops = fail_ops.unwrap_or(next.fail_ops);
    next.max_in_flight = max_in_flight.unwrap_or(next.max_in_flight);
    next.protocol = protocol.unwrap_or(next.protocol);
    validate_faults(&next)?;
    Ok(next)
}

/// What the dice decided for one request, before it touches any group.
enum Verdict {
    Proceed { ambiguous: bool },
    RateLimited { retry_after_secs: u64 },
    Timeout { hang: Duration },
    Throttled { retry_after_secs: u64 },
    Unavailable,
    Failed,
}

pub(crate) struct Node {
    pub(crate) index: usize,
    seed: u64,
    initial_faults: Faults,
    state: Arc<Mutex<NodeMemory>>,
    pub(crate) store: Option<Arc<Store>>,
    /// Node-API calls in progress, writes whose client has gone included;
    /// outside [`NodeMemory`] so that a reset does not lose count of calls
    /// that are still running.
    in_flight: AtomicU32,
}

/// One call counted in [`Node::in_flight`] until it is dropped.
struct InFlight(Arc<Node>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("index", &self.index)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Node {
    pub(crate) fn new(
        index: usize,
        seed: u64,
        initial_faults: Faults,
        state: Arc<Mutex<NodeMemory>>,
        store: Option<Arc<Store>>,
    ) -> Self {
        Self {
            index,
            seed,
            initial_faults,
            state,
            store,
            in_flight: AtomicU32::new(0),
        }
    }

    /// Counts a call in progress, unless `max_in_flight` calls already
    /// are: then `None`, and the call is shed.
    fn admit(self: &Arc<Self>) -> Option<InFlight> {
        let bound = self.lock().faults.max_in_flight;
        let admitted = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (bound == 0 || now < bound).then_some(now + 1)
            });
        admitted.ok().map(|_| InFlight(Arc::clone(self)))
    }

    fn lock(&self) -> MutexGuard<'_, NodeMemory> {
        lock(&self.state)
    }

    pub(crate) fn state(&self) -> SimState {
        let state = self.lock();
        SimState {
            groups: state.groups.iter().cloned().collect(),
            requests: state.requests.clone(),
            responses: state.responses.clone(),
            connections: state.connections,
            intentions: two_phase::listed(&state.intentions),
            undelivered_writes: state.undelivered_writes,
        }
    }

    /// Counts a TCP connection the node accepted.
    pub(crate) fn connection_accepted(&self) {
        self.lock().connections += 1;
    }

    pub(crate) fn faults(&self) -> Faults {
        self.lock().faults.clone()
    }

    pub(crate) fn set_faults(&self, patch: FaultsPatch) -> Result<Faults, String> {
        let mut state = self.lock();
        let next = patched(&state.faults, patch)?;
        if next.rate_limit != state.faults.rate_limit {
            state.limiter = limiter(next.rate_limit);
        }
        state.faults = next.clone();
        Ok(next)
    }

    /// Back to the start-up state, keeping `groups`; the generator is
    /// reseeded so a scenario replays the same after a reset.
    pub(crate) fn reboot(&self, groups: BTreeSet<String>) {
        let mut state = self.lock();
        *state = NodeMemory::new(self.initial_faults.clone(), self.seed, groups);
    }

    pub(crate) async fn reset(&self) -> Result<(), SimError> {
        self.reboot(BTreeSet::new());
        self.persist().await
    }

    pub(crate) async fn insert(&self, group_id: &str) -> Result<bool, SimError> {
        let inserted = self.lock().groups.insert(group_id.to_owned());
        if inserted {
            self.persist().await?;
        }
        Ok(inserted)
    }

    pub(crate) async fn remove(&self, group_id: &str) -> Result<bool, SimError> {
        let removed = self.lock().groups.remove(group_id);
        if removed {
            self.persist().await?;
        }
        Ok(removed)
    }

    async fn persist(&self) -> Result<(), SimError> {
        match &self.store {
            Some(store) => store.save().await,
            None => Ok(()),
        }
    }

    fn count_request(&self, op: NodeOp) {
        *self
            .lock()
            .requests
            .entry(op.as_str().to_owned())
            .or_default() += 1;
    }

    fn count_response(&self, status: StatusCode) {
        *self
            .lock()
            .responses
            .entry(status.as_u16().to_string())
            .or_default() += 1;
    }

    fn count_undelivered(&self) {
        self.lock().undelivered_writes += 1;
    }

    /// `latency_ms` plus the jitter, plus `write_latency_ms` for a write.
    fn draw_delay(&self, op: NodeOp) -> Duration {
        let mut guard = self.lock();
        let state = &mut *guard;
        let jitter = match state.faults.jitter_ms {
            0 => 0,
            jitter_ms => state.rng.random_range(0..=jitter_ms),
        };
        let write = if op.is_write() {
            state.faults.write_latency_ms
        } else {
            0
        };
        Duration::from_millis(
            state
                .faults
                .latency_ms
                .saturating_add(write)
                .saturating_add(jitter),
        )
    }

    /// Rate limit first (it applies to every call, as a real server's would),
    /// then the probabilities, only for calls in `fail_ops`. The rates are
    /// drawn in a fixed order and the first hit wins, so a rate of 1 for one
    /// fault is exact whatever the others are.
    fn draw_verdict(&self, op: NodeOp) -> Verdict {
        let mut guard = self.lock();
        let state = &mut *guard;
        if let Some(limiter) = &state.limiter {
            if let Err(not_until) = limiter.check() {
                let wait = not_until.wait_time_from(limiter.clock().now());
                let whole_secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                return Verdict::RateLimited {
                    retry_after_secs: whole_secs.max(1),
                };
            }
        }
        let faults = &state.faults;
        if !faults.fail_ops.contains(&op) {
            return Verdict::Proceed { ambiguous: false };
        }
        let rng = &mut state.rng;
        // random() is in [0, 1): a rate of 0 never hits, a rate of 1 always.
        let mut hit = |rate: f64| rng.random::<f64>() < rate;
        if hit(faults.timeout_rate) {
            Verdict::Timeout {
                hang: Duration::from_millis(faults.hang_ms),
            }
        } else if hit(faults.throttle_rate) {
            Verdict::Throttled {
                retry_after_secs: faults.retry_after_secs,
            }
        } else if hit(faults.unavailable_rate) {
            Verdict::Unavailable
        } else if hit(faults.fail_rate) {
            Verdict::Failed
        } else {
            Verdict::Proceed {
                ambiguous: hit(faults.ambiguous_rate),
            }
        }
    }
}

/// A node-API call with its raw input, parsed only once the dice let it
/// through, so a faulted request is refused the same whatever it carries.
enum Call {
    Create(Bytes),
    Delete(Bytes),
    /// `DELETE /v1/group/<id>`, the two-phase protocol's delete.
    DeleteItem(Result<String, String>, Bytes),
    Get(Result<String, String>),
    List,
}

impl Call {
    fn op(&self) -> NodeOp {
        match self {
            Call::Create(_) => NodeOp::Create,
            Call::Delete(_) | Call::DeleteItem(..) => NodeOp::Delete,
            Call::Get(_) => NodeOp::Get,
            Call::List => NodeOp::List,
        }
    }
}

/// The life of one serving instance of a node, as its requests see it.
#[derive(Clone)]
pub(crate) struct Instance {
    /// Set when the instance stops: injected waits end early.
    pub(crate) stopping: CancellationToken,
    /// Set when it is killed: writes in progress end where they are.
    pub(crate) killed: CancellationToken,
    /// The writes in progress, which outlive their connections; a stop or
    /// kill waits for them.
    pub(crate) writes: TaskTracker,
}

#[derive(Clone)]
struct App {
    node: Arc<Node>,
    instance: Instance,
}

pub(crate) fn router(node: Arc<Node>, instance: Instance) -> Router {
    let app = App { node, instance };
    // Both spellings of each path are served directly: the job must cope with
    // redirects, but the reference node should not need it to.
    Router::new()
        .route("/v1/group/", post(create).delete(delete))
        .route("/v1/group", post(create).delete(delete))
        .route("/v1/group/{id}/", get(read).delete(delete_item))
        .route("/v1/group/{id}", get(read).delete(delete_item))
        .route("/v1/groups", get(list))
        .route("/v1/groups/", get(list))
        .route("/healthz", get(healthz))
        .route("/_sim/state", get(sim_state))
        .route("/_sim/faults", get(sim_faults).put(sim_set_faults))
        .route("/_sim/reset", post(sim_reset))
        .fallback(not_found)
        .with_state(app)
}

async fn create(State(app): State<App>, body: Bytes) -> Response {
    app.serve(Call::Create(body)).await
}

async fn delete(State(app): State<App>, body: Bytes) -> Response {
    app.serve(Call::Delete(body)).await
}

async fn delete_item(
    State(app): State<App>,
    id: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Response {
    let id = id
        .map(|Path(id)| id)
        .map_err(|rejection| rejection.body_text());
    app.serve(Call::DeleteItem(id, body)).await
}

async fn read(State(app): State<App>, id: Result<Path<String>, PathRejection>) -> Response {
    let id = id
        .map(|Path(id)| id)
        .map_err(|rejection| rejection.body_text());
    app.serve(Call::Get(id)).await
}

async fn list(State(app): State<App>) -> Response {
    app.serve(Call::List).await
}

async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

async fn sim_state(State(app): State<App>) -> Response {
    Json(app.node.state()).into_response()
}

async fn sim_faults(State(app): State<App>) -> Response {
    Json(app.node.faults()).into_response()
}

async fn sim_set_faults(State(app): State<App>, body: Bytes) -> Response {
    let patch = match serde_json::from_slice::<FaultsPatch>(&body) {
        Ok(patch) => patch,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid faults: {e}")),
    };
    match app.node.set_faults(patch) {
        Ok(faults) => Json(faults).into_response(),
        Err(message) => error(
            StatusCode::BAD_REQUEST,
            &format!("invalid faults: {message}"),
        ),
    }
}

async fn sim_reset(State(app): State<App>) -> Response {
    match app.node.reset().await {
        Ok(()) => Json(app.node.state()).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such route")
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

/// The two-phase protocol's error body.
fn detail(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"detail": message}))).into_response()
}

fn too_many_requests(retry_after_secs: u64, message: &str) -> Response {
    let mut response = error(StatusCode::TOO_MANY_REQUESTS, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    response
}

fn shutting_down() -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, "node is shutting down")
}

/// The id of a create or delete body; the error is the message for a `400`.
fn parse_body(body: &[u8]) -> Result<String, String> {
    match serde_json::from_slice::<GroupBody>(body) {
        Ok(GroupBody { group_id }) if group_id.is_empty() => {
            Err("groupId must not be empty".to_owned())
        }
        Ok(GroupBody { group_id }) => Ok(group_id),
        Err(e) => Err(format!(
            "expected a JSON body {{\"groupId\": \"<id>\"}}: {e}"
        )),
    }
}

impl App {
    async fn serve(&self, call: Call) -> Response {
        let op = call.op();
        self.node.count_request(op);
        let Some(in_flight) = self.node.admit() else {
            let response = error(StatusCode::SERVICE_UNAVAILABLE, "over capacity");
            self.node.count_response(response.status());
            return response;
        };
        let response = if op.is_write() {
            match self.serve_write(call, in_flight).await {
                Some(response) => response,
                // Killed: the connection goes down with the node, unanswered.
                None => return shutting_down(),
            }
        } else {
            let response = self.serve_counted(call).await;
            drop(in_flight);
            response
        };
        self.node.count_response(response.status());
        response
    }

    /// Runs a write in a task of its own and waits for its answer. Dropping
    /// this future (the client has gone) leaves the write running; when its
    /// answer is ready and nobody waits for it any more, it is counted as
    /// undelivered. `None` when the node was killed before the answer.
    async fn serve_write(&self, call: Call, in_flight: InFlight) -> Option<Response> {
        let (answer, answered) = oneshot::channel();
        let app = self.clone();
        self.instance.writes.spawn(async move {
            let response = tokio::select! {
                biased;
                () = app.instance.killed.cancelled() => return,
                response = app.serve_counted(call) => response,
            };
            drop(in_flight);
            if answer.send(response).is_err() {
                app.node.count_undelivered();
            }
        });
        answered.await.ok()
    }

    async fn serve_counted(&self, call: Call) -> Response {
        if !self.pause(self.node.draw_delay(call.op())).await {
            return shutting_down();
        }
        let ambiguous = match self.node.draw_verdict(call.op()) {
            Verdict::Proceed { ambiguous } => ambiguous,
            Verdict::RateLimited { retry_after_secs } => {
                return too_many_requests(retry_after_secs, "rate limit exceeded")
            }
            Verdict::Timeout { hang } => {
                if !self.pause(hang).await {
                    return shutting_down();
                }
                return error(StatusCode::GATEWAY_TIMEOUT, "injected timeout");
            }
            Verdict::Throttled { retry_after_secs } => {
                return too_many_requests(retry_after_secs, "injected throttling")
            }
            Verdict::Unavailable => {
                return error(StatusCode::SERVICE_UNAVAILABLE, "injected unavailability")
            }
            Verdict::Failed => return error(StatusCode::INTERNAL_SERVER_ERROR, "injected failure"),
        };
        let response = self.apply(call).await;
        if ambiguous {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "injected failure after the call was applied",
            );
        }
        response
    }

    /// Sleeps unless the node stops first; false means it stopped.
    async fn pause(&self, duration: Duration) -> bool {
        if duration.is_zero() {
            return true;
        }
        tokio::select! {
            () = tokio::time::sleep(duration) => true,
            () = self.instance.stopping.cancelled() => false,
        }
    }

    async fn apply(&self, call: Call) -> Response {
        let protocol = self.node.lock().faults.protocol;
        match (protocol, call) {
            (Protocol::TwoPhase, Call::Create(body)) => self.two_phase_create(&body).await,
            (Protocol::TwoPhase, Call::DeleteItem(id, body)) => {
                self.two_phase_delete(id, &body).await
            }
            (Protocol::TwoPhase, Call::Delete(_)) => detail(
                StatusCode::METHOD_NOT_ALLOWED,
                "this node speaks the two-phase protocol: DELETE /v1/group/<id> with {\"sessionId\"}",
            ),
            (Protocol::Standard, Call::DeleteItem(..)) => error(
                StatusCode::METHOD_NOT_ALLOWED,
                "delete with DELETE /v1/group/ and {\"groupId\"}",
            ),
            (_, call) => self.apply_standard(call).await,
        }
    }

    async fn two_phase_create(&self, body: &[u8]) -> Response {
        let body: SessionCreateBody = match two_phase::parse(body) {
            Ok(body) => body,
            Err(message) => return detail(StatusCode::UNPROCESSABLE_ENTITY, &message),
        };
        self.two_phase_step(IntentionOp::Create, Ok(body.group_id), &body.session_id)
            .await
    }

    async fn two_phase_delete(&self, id: Result<String, String>, body: &[u8]) -> Response {
        let body: SessionDeleteBody = match two_phase::parse(body) {
            Ok(body) => body,
            Err(message) => return detail(StatusCode::UNPROCESSABLE_ENTITY, &message),
        };
        self.two_phase_step(IntentionOp::Delete, id, &body.session_id)
            .await
    }

    async fn two_phase_step(
        &self,
        operation: IntentionOp,
        group_id: Result<String, String>,
        session_id: &str,
    ) -> Response {
        let group_id = match group_id {
            Ok(id) if !id.is_empty() => id,
            Ok(_) => {
                return detail(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "groupId must not be empty",
                )
            }
            Err(message) => return detail(StatusCode::UNPROCESSABLE_ENTITY, &message),
        };
        if session_id.is_empty() {
            return detail(
                StatusCode::UNPROCESSABLE_ENTITY,
                "sessionId must not be empty",
            );
        }
        let done = {
            let mut state = self.node.lock();
            let memory = &mut *state;
            two_phase::step(
                &mut memory.groups,
                &mut memory.intentions,
                operation,
                &group_id,
                session_id,
            )
        };
        match done {
            Step::Recorded => Json(GroupBody::new(group_id)).into_response(),
            Step::Committed => match self.node.persist().await {
                Ok(()) => Json(GroupBody::new(group_id)).into_response(),
                Err(e) => not_persisted(&e),
            },
            Step::Conflict(why) => detail(StatusCode::CONFLICT, why),
            Step::Absent => detail(StatusCode::NOT_FOUND, "group not found"),
        }
    }

    async fn apply_standard(&self, call: Call) -> Response {
        match call {
            Call::Create(body) => {
                let group_id = match parse_body(&body) {
                    Ok(id) => id,
                    Err(message) => return error(StatusCode::BAD_REQUEST, &message),
                };
                match self.node.insert(&group_id).await {
                    Ok(true) => {
                        (StatusCode::CREATED, Json(GroupBody::new(group_id))).into_response()
                    }
                    Ok(false) => error(StatusCode::BAD_REQUEST, "group already exists"),
                    Err(e) => not_persisted(&e),
                }
            }
            Call::Delete(body) => {
                let group_id = match parse_body(&body) {
                    Ok(id) => id,
                    Err(message) => return error(StatusCode::BAD_REQUEST, &message),
                };
                match self.node.remove(&group_id).await {
                    Ok(true) => Json(GroupBody::new(group_id)).into_response(),
                    Ok(false) => error(StatusCode::NOT_FOUND, "group not found"),
                    Err(e) => not_persisted(&e),
                }
            }
            Call::DeleteItem(..) => error(StatusCode::METHOD_NOT_ALLOWED, "no such call"),
            Call::Get(Err(message)) => error(StatusCode::BAD_REQUEST, &message),
            Call::Get(Ok(group_id)) => {
                if self.node.lock().groups.contains(&group_id) {
                    Json(GroupBody::new(group_id)).into_response()
                } else {
                    error(StatusCode::NOT_FOUND, "group not found")
                }
            }
            // Records, as a get answers them: a list then gives a delete
            // the exact record to restore.
            Call::List => {
                let groups: Vec<GroupBody> =
                    self.node.lock().groups.iter().map(GroupBody::new).collect();
                Json(json!({ "groups": groups })).into_response()
            }
        }
    }
}

/// The change is in memory but may not survive a restart: a 500 tells the
/// client the truth, that the call may or may not have been applied.
fn not_persisted(e: &SimError) -> Response {
    tracing::error!(error = %e, "group change not persisted");
    error(StatusCode::INTERNAL_SERVER_ERROR, "change not persisted")
}
