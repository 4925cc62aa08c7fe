//! The table of every environment variable the job reads: name, default,
//! accepted range and meaning. `--help`, the defaults applied when a
//! variable is unset and the checks on `.env_example` all come from it.

use std::fmt;

use DefaultValue::{Required, Unset, Value};
use Kind::{Choice, Flag, Number, Text};

/// The default of a variable, as documented and as applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// The variable must be set.
    Required,
    /// Applied when the variable is unset; parsed like a set value.
    Value(&'static str),
    /// Leaving the variable unset is meaningful; the text says what it means.
    Unset(&'static str),
}

impl fmt::Display for DefaultValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DefaultValue::Required => f.write_str("required"),
            DefaultValue::Value(v) => write!(f, "default: {v}"),
            DefaultValue::Unset(meaning) => write!(f, "default: unset, {meaning}"),
        }
    }
}

/// What values a variable takes, as checked before its value is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text that the variable's own parser checks.
    Text,
    /// `true`/`false` or `1`/`0`, case-insensitive.
    Flag,
    /// One of these words, case-insensitive.
    Choice(&'static [&'static str]),
    /// A whole number (plain ASCII digits), within the inclusive range when
    /// one is documented.
    Number(Option<(u64, u64)>),
}

/// Documentation of one environment variable: the single source for
/// `--help`, the defaults, the checks of its value and `.env_example`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VariableDoc {
    pub name: &'static str,
    pub default: DefaultValue,
    pub kind: Kind,
    pub description: &'static str,
}

impl VariableDoc {
    /// The inclusive range of a whole-number variable, when documented.
    pub fn range(&self) -> Option<(u64, u64)> {
        match self.kind {
            Kind::Number(range) => range,
            Kind::Text | Kind::Flag | Kind::Choice(_) => None,
        }
    }
}

// Each row is written once, in documentation order: the macro makes of it
// the named constant the parsers use for their errors and its entry in
// `VARIABLES`, so the two cannot drift apart.
macro_rules! variables {
    ($($name:ident: $default:expr, $kind:expr, $description:literal;)*) => {
        $(pub(super) const $name: VariableDoc = VariableDoc {
            name: stringify!($name),
            default: $default,
            kind: $kind,
            description: $description,
        };)*

        /// Every variable the job reads, in documentation order.
        pub const VARIABLES: &[VariableDoc] = &[$($name),*];
    };
}

// NAME: default, kind,
//     description (the text --help shows, rewrapped at 80 columns).
variables! {
    NODES: Required, Text,
        "Comma-separated node base URLs (http://host[:port][/prefix] or https://...) \
        or host[:port] entries, which mean http://host[:port]. IPv6 literals need brackets \
        ([::1]:8080). Entries are trimmed; empty entries, credentials, queries and nodes \
        listed twice are errors. At most 10000 nodes.";
    OPERATION: Required, Choice(&["create", "delete", "verify", "reconcile"]),
        "create (make every listed group present on every node), delete (make \
        every listed group absent from every node), verify (read-only: report every group \
        that is on some nodes only; without ids, every group any node lists through GET \
        /v1/groups) or reconcile (the listed ids are the desired set: each made present \
        on every node, and with PRUNE=true every other group deleted from every node); \
        case-insensitive.";
    DRY_RUN: Value("false"), Flag,
        "true: plan only. The nodes are read (and, for reconcile, listed), no \
        write is sent; one log line per group that would change, and the run report is \
        the plan. Exit 0 when nothing would change, 4 when something would, 1 when a \
        node could not be read. true/false or 1/0, case-insensitive. verify is always \
        read-only and ignores it.";
    PRUNE: Value("false"), Flag,
        "With OPERATION=reconcile, true also deletes every group the nodes list \
        that is not among the ids, each as its own all-or-nothing delete. Needs every \
        node to answer GET /v1/groups and at least one listed id; an error with any \
        other operation. true/false or 1/0, case-insensitive.";
    PRUNE_MAX: Value("100"), Number(Some((0, u32::MAX as u64))),
        "Most groups one reconcile may prune. When more would be pruned, none \
        is: the run names how many and the first of them and exits 1, so that a wrong or \
        truncated id list cannot empty a cluster. The listed groups are still made \
        present.";
    PRIOR_STATE: Value("auto"), Choice(&["auto", "list", "read"]),
        "Where a transaction learns each node's state before writing. list: one \
        GET /v1/groups per node for the whole batch, before the first group, so a group \
        costs one request per node instead of two (a node that cannot list stops the run \
        before its first group, exit 1). read: one read per group and node. auto: list \
        for a batch of 64 to 1000000 entries, from the nodes that list, and read the \
        others. Either way a delete reads a node whose list gave the id without its \
        record, and an id listed again is read.";
    SHARD_COUNT: Value("1"), Number(Some((1, 100_000))),
        "How many pods share the id list (an Indexed Job's completions). Every \
        pod reads the whole list and handles only the ids of its own shard: the first 8 \
        bytes of the id's SHA-256, big-endian, modulo SHARD_COUNT. An id listed twice \
        lands in the same shard; a reconcile prunes only its own shard's groups, and \
        PRUNE_MAX counts per shard.";
    SHARD_INDEX: Unset("JOB_COMPLETION_INDEX"), Number(None),
        "This pod's shard, from 0 to SHARD_COUNT - 1. Required with SHARD_COUNT \
        above 1 unless JOB_COMPLETION_INDEX is set.";
    JOB_COMPLETION_INDEX: Unset("not in an Indexed Job"), Number(None),
        "Set by Kubernetes in the pods of an Indexed Job: the shard index when \
        SHARD_INDEX is unset. Must be below SHARD_COUNT, so that an Indexed Job without \
        SHARD_COUNT cannot run the whole list in every pod.";
    NODE_PROTOCOL: Value("standard"), Choice(&["standard", "two-phase"]),
        "How the nodes take creates and deletes. standard: one call each \
        (POST and DELETE /v1/group/ with {\"groupId\"}). two-phase: POST /v1/group and \
        DELETE /v1/group/<id> with a sessionId; the first call of a session records an \
        intention, the same call again commits it. In two-phase mode a group is prepared \
        on every node that needs a change and committed only when every prepare holds; \
        otherwise the job's own intentions are committed and reversed through an undo \
        session (docs/TWO_PHASE.md).";
    GROUP_IDS: Unset("ids come only from GROUP_IDS_FILE"), Text,
        "Comma-separated group ids, each trimmed. A group id is 1 to 256 bytes of \
        UTF-8 without control characters, and not exactly . or .. (which no URL path can \
        address). GROUP_IDS and GROUP_IDS_FILE together must give \
        at least one id, except for verify, which without ids checks every group the \
        nodes list. Every entry is one transaction; an id listed again runs again \
        after its earlier entry has finished, never at the same time.";
    GROUP_IDS_FILE: Unset("ids come only from GROUP_IDS"), Text,
        "Path of a UTF-8 file with one group id per line (use it for ids that \
        contain commas). Lines are trimmed; blank lines and lines starting with # are \
        skipped. Its ids follow those of GROUP_IDS. Every line is checked before the \
        first request; the ids are then held in memory, some 60 bytes each plus the \
        id (1,000,000 ids of 36 bytes: about 100 MB); with SHARD_COUNT above 1 a pod \
        keeps only its own shard's ids.";
    REQUEST_TIMEOUT_MS: Value("5000"), Number(Some((1, 600_000))),
        "How long the job waits for the answer of one HTTP attempt (connecting, \
        sending and reading the whole answer), in milliseconds. Short makes the job \
        quick to give up on a hung node; a node may still apply a write after it \
        (WRITE_SETTLE_MS).";
    WRITE_SETTLE_MS: Value("10000"), Number(Some((0, 600_000))),
        "How long a node may take to apply a write whose answer the job did not \
        get (a timeout or a broken connection after the write was sent, or a 5xx), in \
        milliseconds from the moment the job stopped waiting for it. Until then a read \
        of the node may be overtaken by the write, so it decides nothing: reads and undo \
        writes of that node wait the window out (a read that finds the state the write \
        would leave is kept at once), and the end of the run reads once more a node \
        whose window outlived its group; a journal's recovery waits it out too. It \
        costs time only for groups with a lost answer. REQUEST_TIMEOUT_MS is how long \
        the job waits for an answer (short: quick to give up on a hung node); \
        WRITE_SETTLE_MS is how long a node may take to apply a write (long: a safe \
        outcome). Keep ROLLBACK_TIMEOUT_SECS above it. 0 takes every read at once.";
    CONNECT_TIMEOUT_MS: Value("2000"), Number(Some((1, 600_000))),
        "Time limit for opening a TCP (and TLS) connection to a node, in \
        milliseconds.";
    MAX_RETRIES: Value("5"), Number(Some((0, 100))),
        "Retries of a request after a transient failure (connection error, \
        timeout, 408, 429, 5xx), on top of the first attempt.";
    RETRY_BASE_DELAY_MS: Value("100"), Number(Some((1, 600_000))),
        "First delay of the exponential backoff between retries, in \
        milliseconds; it doubles per retry up to RETRY_MAX_DELAY_MS, and each wait is \
        drawn at random below it (full jitter).";
    RETRY_MAX_DELAY_MS: Value("10000"), Number(Some((1, 3_600_000))),
        "Longest backoff wait between retries, in milliseconds; at least \
        RETRY_BASE_DELAY_MS. A node's Retry-After is honoured even when longer.";
    RUN_TIMEOUT_SECS: Value("3600"), Number(Some((1, 604_800))),
        "Deadline for starting work, in seconds from start-up. Groups not started \
        by then are not attempted; groups in flight get ROLLBACK_TIMEOUT_SECS more.";
    ROLLBACK_TIMEOUT_SECS: Value("20"), Number(Some((1, 3_600))),
        "Budget after the run deadline or a SIGTERM/SIGINT in which groups in \
        flight finish or roll back, in seconds. Keep it below the pod's \
        terminationGracePeriodSeconds.";
    CONCURRENCY: Value("16"), Number(Some((1, 10_000))),
        "Groups processed at the same time.";
    NODE_CONCURRENCY: Value("8"), Number(Some((1, 1_000))),
        "Most requests in flight to one node at the same time: the ceiling of \
        the node's limit, which starts there, shrinks on 503s, 429s and timeouts and \
        grows back while answers succeed (AIMD, docs/FLOW_CONTROL.md).";
    NODE_RATE_LIMIT: Value("0"), Number(Some((0, 1_000_000))),
        "Requests per second sent to one node, spread evenly (no bursts); 0 \
        turns the limit off. A 429 from a node also pauses every request to it until its \
        Retry-After has passed.";
    NODE_DOWN_AFTER_FAILURES: Value("5"), Number(Some((0, 1_000))),
        "Failed attempts in a row (connection errors, timeouts, 5xx answers; \
        a 503 soon after a success is shed load and does not count) that take a node \
        down; half of at least 20 attempts failing within 10 s does too. While a node is \
        down no new group starts, requests to it wait, and a read probes it with backoff \
        (250 ms doubling to 5 s) until it answers. 0: nodes never go down, every request \
        is retried on its own.";
    NODE_DOWN_WAIT_SECS: Value("60"), Number(Some((0, 86_400))),
        "How long the run waits for a down node to come back, in seconds from \
        the moment it went down. When it runs out, requests to the node fail unsent, no \
        new group starts and groups in flight finish or roll back; the run exits 1 (3 if \
        a group is left in doubt), naming the node and its last errors. 0 stops at once. \
        Keep RUN_TIMEOUT_SECS, and the Job's activeDeadlineSeconds, above it.";
    MAX_FAILED_GROUPS: Value("0"), Number(Some((0, u32::MAX as u64))),
        "Stop starting new groups once this many have failed (rolled back, \
        inconsistent, or not readable by verify or a dry run); groups in flight still \
        finish, the report says from which entry \
        on groups were not attempted. 0 means no limit.";
    PROGRESS_INTERVAL_SECS: Value("10"), Number(Some((0, 86_400))),
        "Seconds between progress lines (done/total, outcomes, rate, ETA); 0 \
        turns them off. With LOG_FORMAT=pretty on a terminal, a progress bar instead.";
    AUTH_TOKEN: Unset("no Authorization header is sent"), Text,
        "Token sent to every node as `Authorization: Bearer <token>` (the token \
        alone, visible ASCII without spaces). Never logged or shown in errors.";
    AUTH_TOKEN_FILE: Unset("the token, if any, comes from AUTH_TOKEN"), Text,
        "Path of a file that holds the token (as a Vault agent or the secrets-store \
        CSI driver delivers it), read once at start; surrounding whitespace (a final \
        newline) is ignored, and the token follows AUTH_TOKEN's rules. Never logged. \
        Setting both AUTH_TOKEN and AUTH_TOKEN_FILE is an error.";
    CA_CERT_PATH: Unset("the system's trust store only"), Text,
        "PEM file with the certificate(s) of a private CA that signs the nodes' \
        https certificates; trusted in addition to the system's trust store. A \
        certificate error is never retried, and no new group starts after one.";
    LOG_FORMAT: Value("json"), Choice(&["json", "pretty"]),
        "json: one flat JSON object per line on stdout (timestamp, level, \
        severity, message, target, fields); pretty: human-readable lines, coloured only \
        on a terminal.";
    LOG_LEVEL: Value("info"), Text,
        "Log filter: a level (error, warn, info, debug, trace) or tracing \
        EnvFilter directives such as api_consumer=debug,info. The run summary is \
        logged at every level but off.";
    REPORT_PATH: Unset("no report file; the summary is still logged"), Text,
        "Path of the JSON run report written at the end of the run (its \
        directory must exist).";
    TERMINATION_MESSAGE_PATH: Value("/dev/termination-log"), Text,
        "Where a compact run summary (at most 4 KiB of JSON) is written at the \
        end, for kubectl describe pod; written only when the file already exists, as \
        Kubernetes creates it (keep it equal to the container's terminationMessagePath).";
    JOURNAL_PATH: Unset("no journal"), Text,
        "Path of the crash journal (on a volume that outlives the pod). Before \
        changing a group the job records its intent there; a run started after a killed \
        one first returns every group the killed run left unfinished to all-or-nothing, \
        restoring deleted records exactly. Its directory must exist. With SHARD_COUNT \
        above 1 each shard keeps its own file, the path with .shard-<index>-of-<count> \
        appended, so the pods of an Indexed Job can share one volume.";
    METRICS_PUSHGATEWAY_URL: Unset("no metrics"), Text,
        "Base URL of a Prometheus Pushgateway (http or https, a path prefix \
        allowed; no credentials, query or fragment). The run's metrics are pushed to \
        <url>/metrics/job/<METRICS_JOB>[/shard/<index>] every PROGRESS_INTERVAL_SECS and \
        at the end; a gateway that is down, slow or refusing costs one warning line and \
        at most 5 s per push, never the run's outcome.";
    METRICS_JOB: Value("api-consumer"), Text,
        "The job label of the pushed metrics' grouping key: 1 to 128 letters, \
        digits, _ . : or -. Runs with the same METRICS_JOB (and shard) replace each \
        other's metrics, except api_consumer_last_success_timestamp_seconds, which only a \
        run that exits 0 pushes.";
}

/// Most nodes one run accepts: beyond this a typo (a pasted id list?) is
/// far likelier than a real cluster.
pub const MAX_NODES: usize = 10_000;
