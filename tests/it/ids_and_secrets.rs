//! Group ids that URLs mangle, and the token that must never be shown.
//!
//! - Ids with reserved characters, dot segments, unicode and the full 256
//!   bytes are created, read back and deleted exactly: node-sim records the
//!   decoded id it received, and a second create that finds every id without
//!   writing proves the job's reads address the same ids as its writes. The
//!   ids `.` and `..` are refused up front (no URL path can address them).
//! - `AUTH_TOKEN` is sent to every node as `Authorization: Bearer <token>`,
//!   and appears in no log line and no report, at `trace` level, on every
//!   path a run can take, even when a node echoes it back.

use api_consumer::domain::ExitStatus;
use node_sim::FaultsPatch;
use node_sim::NodeOp;
use node_sim::SimCluster;

use crate::common::*;
use crate::raw_node::{answer, Call, RawNode};

/// Ids whose path segment needs encoding, that URL parsers treat specially,
/// or that differ only in ways an over-eager normaliser would erase.
fn awkward_ids() -> Vec<String> {
    let fixed = [
        "a/b",
        "/",
        "//",
        "trailing/",
        "q?x=1",
        "?",
        "h#f",
        "#",
        "%",
        "p%20c",
        "%2F",
        "100%",
        "sp ace",
        "a  b",
        "../x",
        "a..b",
        "...",
        "./x",
        "x/..",
        ".x",
        "x.",
        "+",
        "a+b",
        "back\\slash",
        "\"quoted\"",
        "<tag>&amp;",
        "{json:[1]}",
        "semi;colon=eq@at:co*",
        "ünï-çødé",
        "日本語",
        "emoji 🎉",
        "עברית",
        // Precomposed and decomposed é: two different ids.
        "caf\u{e9}",
        "cafe\u{301}",
        "Case",
        "case",
    ];
    let full_length = [
        "x".repeat(256),
        "é".repeat(128),
        "🎉".repeat(64),
        "/".repeat(256),
        "%".repeat(256),
    ];
    let ids: Vec<String> = fixed
        .iter()
        .map(|s| s.to_string())
        .chain(full_length)
        .collect();
    for id in &ids {
        assert!(id.len() <= 256, "{id:?} is {} bytes", id.len());
    }
    ids
}

/// Ids with a comma, given through `GROUP_IDS_FILE` (`GROUP_IDS` splits on
/// commas).
const COMMA_IDS: [&str; 2] = ["a,b", ","];

#[tokio::test]
async fn awkward_ids_are_created_read_back_and_deleted_exactly() {
    let cluster = cluster(3).await;
    let inline = awkward_ids();
    let inline: Vec<&str> = inline.iter().map(String::as_str).collect();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), COMMA_IDS.join("\n")).unwrap();
    let extra = [("GROUP_IDS_FILE", file.path().to_str().unwrap())];
    let run_op = |operation| {
        let config = config(&cluster.urls(), operation, &inline, &extra);
        async move { run(&config).await }
    };
    let mut expected: Vec<String> = inline
        .iter()
        .chain(&COMMA_IDS)
        .map(|s| s.to_string())
        .collect();
    expected.sort();
    assert_eq!(expected.len(), inline.len() + COMMA_IDS.len(), "ids repeat");

    let report = run_op("create").await;
    assert_eq!(report.exit_code, ExitStatus::AllAtGoal, "{report:#?}");
    for state in states(&cluster).await {
        assert_eq!(state.groups, expected);
    }
    // Every id is found where it was created: no write at all.
    let report = run_op("create").await;
    assert_eq!(report.exit_code, ExitStatus::AllAtGoal, "{report:#?}");
    for state in states(&cluster).await {
        assert_eq!(count(&state.requests, "create"), expected.len() as u64);
    }
    let report = run_op("delete").await;
    assert_eq!(report.exit_code, ExitStatus::AllAtGoal, "{report:#?}");
    for state in states(&cluster).await {
        assert!(state.groups.is_empty(), "{:?}", state.groups);
        assert_eq!(count(&state.requests, "delete"), expected.len() as u64);
    }
}

/// `.` and `..` as a whole id, inline or in the file, are configuration
/// errors; the same characters inside a longer id are fine (see above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_and_dot_dot_are_refused_before_any_request() {
    let cluster = cluster(2).await;
    let nodes = cluster.urls().join(",");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ids.txt");
    std::fs::write(&file, "fine\n..\n").unwrap();
    let file = file.to_str().unwrap();
    let cases = [
        ("GROUP_IDS", vec![("GROUP_IDS", ".")]),
        ("GROUP_IDS", vec![("GROUP_IDS", "..")]),
        ("GROUP_IDS", vec![("GROUP_IDS", "a, .. ,b")]),
        ("GROUP_IDS_FILE", vec![("GROUP_IDS_FILE", file)]),
    ];
    for (variable, ids) in cases {
        let mut vars = vec![("NODES", nodes.as_str()), ("OPERATION", "create")];
        vars.extend(ids);
        let output = command(&dir, &vars).output().unwrap();
        assert_config_error(&output, variable);
        let message = String::from_utf8_lossy(&output.stdout);
        assert!(message.contains("cannot be addressed"), "{message}");
    }
    for state in states(&cluster).await {
        assert!(state.requests.values().all(|&n| n == 0), "{state:?}");
    }
}

const TOKEN: &str = "tok-ids-and-s3cr3ts-7f2a";

/// A node that echoes the `Authorization` header of every request back in
/// headers and bodies (as debugging proxies and careless servers do), so
/// that the job gets every chance to log it; when it `rejects`, it answers
/// everything `401`, quoting the token.
async fn echo_node(rejects: bool) -> RawNode {
    RawNode::start(move |request, held| {
        let auth = request.header("authorization").unwrap_or_default();
        if rejects {
            let challenge = format!("Bearer error=\"invalid_token\", token=\"{auth}\"");
            return answer(
                "401 Unauthorized",
                &[("WWW-Authenticate", &challenge)],
                format!("rejected {auth}"),
            );
        }
        let echoed = [("X-Echo-Authorization", auth)];
        let record = |id: &str| serde_json::json!({ "groupId": id, "seenWith": auth }).to_string();
        match &request.call {
            Call::Read(id) if held.contains_key(id) => answer("200 OK", &echoed, record(id)),
            Call::Read(id) => answer("404 Not Found", &echoed, format!("no {id} for {auth}")),
            Call::Create(id) if !held.contains_key(id) => {
                held.insert(id.clone(), request.json());
                answer("201 Created", &echoed, record(id))
            }
            Call::Delete(id) if held.remove(id).is_some() => answer("200 OK", &echoed, record(id)),
            _ if request.method == "GET" => answer(
                "404 Not Found",
                &echoed,
                format!("no such group for {auth}"),
            ),
            _ => answer("400 Bad Request", &echoed, format!("refused for {auth}")),
        }
    })
    .await
}

/// The `Authorization` header of every request `node` received.
fn authorizations(node: &RawNode) -> Vec<Option<String>> {
    node.requests()
        .iter()
        .map(|r| r.header("authorization").map(str::to_string))
        .collect()
}

/// One path a run can take: how the two simulated nodes (after the echo
/// node) are set up, and how the run must end.
struct Scenario {
    name: &'static str,
    operation: &'static str,
    /// Faults of the first and second simulated node.
    faults: [Option<FaultsPatch>; 2],
    /// The group exists on every node before the run.
    prior_everywhere: bool,
    /// A node with nothing listening follows the others.
    unreachable_node: bool,
    echo_rejects: bool,
    /// The token comes from `AUTH_TOKEN_FILE` instead of `AUTH_TOKEN`.
    token_file: bool,
    extra: &'static [(&'static str, &'static str)],
    exit: i32,
}

const BASE: Scenario = Scenario {
    name: "",
    operation: "create",
    faults: [None, None],
    prior_everywhere: false,
    unreachable_node: false,
    echo_rejects: false,
    token_file: false,
    extra: &[],
    exit: 0,
};

fn paths() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "success",
            ..BASE
        },
        Scenario {
            name: "rollback",
            faults: [None, Some(failing(&[NodeOp::Create]))],
            exit: 1,
            ..BASE
        },
        Scenario {
            name: "inconsistent",
            faults: [
                Some(failing(&[NodeOp::Delete])),
                Some(failing(&[NodeOp::Create])),
            ],
            exit: 3,
            ..BASE
        },
        Scenario {
            name: "delete rolled back, echoed record restored",
            operation: "delete",
            prior_everywhere: true,
            faults: [None, Some(failing(&[NodeOp::Delete]))],
            exit: 1,
            ..BASE
        },
        Scenario {
            name: "unreachable node",
            unreachable_node: true,
            exit: 1,
            ..BASE
        },
        Scenario {
            name: "token rejected with 401",
            echo_rejects: true,
            exit: 1,
            ..BASE
        },
        Scenario {
            name: "rollback, pretty logs",
            faults: [None, Some(failing(&[NodeOp::Create]))],
            extra: &[("LOG_FORMAT", "pretty")],
            exit: 1,
            ..BASE
        },
        Scenario {
            name: "token from AUTH_TOKEN_FILE",
            token_file: true,
            ..BASE
        },
        Scenario {
            name: "token from AUTH_TOKEN_FILE, a rollback",
            faults: [None, Some(failing(&[NodeOp::Create]))],
            token_file: true,
            exit: 1,
            ..BASE
        },
        Scenario {
            name: "configuration error elsewhere",
            extra: &[("CONCURRENCY", "many")],
            exit: 2,
            ..BASE
        },
        Scenario {
            name: "configuration error in the token",
            extra: &[("AUTH_TOKEN", "Bearer tok-ids-and-s3cr3ts-7f2a")],
            exit: 2,
            ..BASE
        },
    ]
}

/// Runs `path` through the binary at `trace` with a report file; returns
/// its stdout, stderr and report (empty when none was written).
async fn run_path(path: &Scenario, cluster: &SimCluster, echo: &RawNode) -> [String; 3] {
    for (node, faults) in cluster.nodes().iter().zip(&path.faults) {
        if let Some(faults) = faults {
            node.set_faults(faults.clone()).unwrap();
        }
    }
    if path.prior_everywhere {
        for node in cluster.nodes() {
            node.insert_group("g").await.unwrap();
        }
        echo.hold("g");
    }
    let mut nodes = vec![echo.url.clone()];
    nodes.extend(cluster.urls());
    if path.unreachable_node {
        nodes.push(dead_node());
    }
    let nodes = nodes.join(",");
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let mut vars = vec![
        ("NODES", nodes.as_str()),
        ("OPERATION", path.operation),
        ("GROUP_IDS", "g"),
        ("AUTH_TOKEN", TOKEN),
        ("LOG_LEVEL", "trace"),
        ("REPORT_PATH", report.to_str().unwrap()),
        ("MAX_RETRIES", "1"),
        ("RETRY_BASE_DELAY_MS", "5"),
    ];
    let token_file = dir.path().join("token");
    if path.token_file {
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        vars.retain(|(key, _)| *key != "AUTH_TOKEN");
        vars.push(("AUTH_TOKEN_FILE", token_file.to_str().unwrap()));
    }
    vars.extend_from_slice(path.extra);
    let output = command(&dir, &vars).output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(path.exit),
        "{}: {}",
        path.name,
        String::from_utf8_lossy(&output.stdout)
    );
    [
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        std::fs::read_to_string(&report).unwrap_or_default(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_sent_to_every_node_and_shown_nowhere() {
    let bearer = format!("Bearer {TOKEN}");
    for path in paths() {
        let cluster = cluster(2).await;
        let echo = echo_node(path.echo_rejects).await;
        let outputs = run_path(&path, &cluster, &echo).await;
        for (what, text) in ["stdout", "stderr", "report"].iter().zip(&outputs) {
            assert!(
                !text.contains("s3cr3ts"),
                "{}: the token is in the {what}:\n{text}",
                path.name
            );
        }
        // Trace level really is on: the secret is absent from verbose logs.
        if path.exit != 2 {
            assert!(outputs[0].lines().count() > 10, "{}", path.name);
        }
        let seen = authorizations(&echo);
        if path.exit == 2 {
            assert!(seen.is_empty(), "{}: requests sent: {seen:?}", path.name);
            continue;
        }
        assert!(!seen.is_empty(), "{}: the echo node got nothing", path.name);
        for auth in &seen {
            assert_eq!(auth.as_deref(), Some(bearer.as_str()), "{}", path.name);
        }
        for state in states(&cluster).await {
            let requests: u64 = state.requests.values().sum();
            assert!(requests > 0, "{}: a node got nothing", path.name);
        }
    }
}
