//! Table tests of the transaction's per-node decisions: how a forward
//! write's answer settles a node, which nodes a rollback undoes (and how it
//! starts on them), and what an undo comes to. Every expected value below
//! is worked out by hand from the rules as rules.rs documents them.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;

use serde_json::json;

use super::*;
use crate::domain::Change::{Create, Delete};
use crate::domain::NodeState::{Absent, Present, Unknown};

use self::Fate::{Left, ReadFirst, Undo};

// ---------------------------------------------------------------- helpers

/// What the transaction sends to a node, and what comes back.
#[derive(Debug, Clone, Copy)]
enum Write {
    /// Nothing is sent: the node is already at the goal.
    Nothing,
    /// The expected success (`201` create, `200` delete).
    Applied,
    /// Any other answer, with what the attempts were.
    Unresolved {
        status: Option<u16>,
        attempts: Attempts,
    },
}

const fn unresolved(
    status: Option<u16>,
    count: u32,
    earlier_maybe_applied: bool,
    maybe_applied: bool,
) -> Write {
    Write::Unresolved {
        status,
        attempts: Attempts {
            count,
            earlier_maybe_applied,
            maybe_applied,
            settles_at: None,
        },
    }
}

/// The only attempt was answered `status` (which proves nothing about
/// whether the node applied it).
const fn only(status: Option<u16>) -> Write {
    unresolved(status, 1, false, true)
}

/// A first attempt answered `429` (proved unapplied), the second `status`.
const fn after_429(status: Option<u16>) -> Write {
    unresolved(status, 2, false, true)
}

/// A first attempt answered `503` (it may have landed), the second `status`.
const fn after_503(status: Option<u16>) -> Write {
    unresolved(status, 2, true, true)
}

/// Every attempt was refused unapplied (`429`, or `None`: connection
/// refused), the last answering `status`.
const fn refused(status: Option<u16>) -> Write {
    unresolved(status, 3, false, false)
}

/// The detail of an unresolved answer with `status`.
fn answered(status: Option<u16>) -> String {
    match status {
        Some(code) => format!("answered {code}"),
        None => "no answer".to_string(),
    }
}

impl Write {
    fn answer(self) -> Option<(WriteAnswer, Attempts)> {
        match self {
            Write::Nothing => None,
            Write::Applied => Some((
                WriteAnswer::Applied,
                Attempts {
                    count: 1,
                    earlier_maybe_applied: false,
                    maybe_applied: true,
                    settles_at: None,
                },
            )),
            Write::Unresolved { status, attempts } => Some((
                WriteAnswer::Unresolved {
                    status,
                    detail: answered(status),
                },
                attempts,
            )),
        }
    }

    fn status(self) -> Option<u16> {
        match self {
            Write::Unresolved { status, .. } => status,
            Write::Nothing | Write::Applied => None,
        }
    }
}

/// What a read of the node answers; `Unknown` stands for a failed read.
fn read_answer(state: NodeState) -> ReadAnswer {
    match state {
        NodeState::Present => ReadAnswer::Present(json!({"groupId": "g"})),
        NodeState::Absent => ReadAnswer::Absent,
        NodeState::Unknown => ReadAnswer::Failed {
            status: None,
            detail: "read timed out".to_string(),
        },
    }
}

/// Runs one node through the forward write as `Transaction::apply` does:
/// reads its prior state, and if a write is sent marks it written first,
/// settles the answer, and reads the node back if (and only if) the answer
/// asks for it (`read`: `None` means the table expects no read-back).
fn run_forward(
    name: &str,
    op: Change,
    prior: NodeState,
    write: Write,
    cancelled: bool,
    read: Option<NodeState>,
) -> NodeWork {
    let mut work = NodeWork::from_prior(read_answer(prior));
    let Some((answer, attempts)) = write.answer() else {
        assert!(
            read.is_none(),
            "{name}: nothing was sent, nothing is read back"
        );
        return work;
    };
    work.written = true;
    let step = match (settle_write(op, answer, &attempts, cancelled), read) {
        (Settled::Step(step), None) => step,
        (Settled::ReadBack { status, detail }, Some(found)) => {
            assert_eq!(
                status,
                write.status(),
                "{name}: the read-back keeps the answer's status"
            );
            read_back_step(detail, &read_answer(found))
        }
        (settled, read) => {
            panic!("{name}: settle_write gave {settled:?}, the table expects read-back {read:?}")
        }
    };
    work.settle(step);
    work
}

/// A node whose forward write was applied: at the goal, to be undone.
fn written_node(op: Change) -> NodeWork {
    run_forward(
        "applied",
        op,
        op.changed_from(),
        Write::Applied,
        false,
        None,
    )
}

/// What a rollback does with a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Left as it is: `needs_undo()` is false.
    Left,
    /// Undone, starting with the undo itself (the state is known).
    Undo,
    /// Undone, starting with a read (the state is unknown).
    ReadFirst,
}

impl Fate {
    fn start(self) -> Option<UndoStart> {
        match self {
            Fate::Left => None,
            Fate::Undo => Some(UndoStart::Undo),
            Fate::ReadFirst => Some(UndoStart::ReadFirst),
        }
    }
}

const FOREIGN: &str = "already at the goal before this run's write (changed by another writer)";
const NOT_APPLIED: &str = "(not applied)";
const CANCELLED: &str = "; cancelled: the group is rolling back";
const READ_FAILED: &str = "; read failed: read timed out";
const STILL_HOLDS: &str = "compensation answered success but the node still holds the change";

// ------------------------------------------------------- the forward table

type ForwardRow = (
    &'static str,         // name
    Change,               // op
    NodeState,            // prior (as read before any write)
    Write,                // what is sent and answered
    bool,                 // cancelled (the group is rolling back)
    Option<NodeState>,    // read-back: None = none asked; Some(Unknown) = the read fails
    Fate,                 // needs_undo, and undo_start when it does
    NodeState,            // prior after settling
    NodeState,            // state after settling
    bool,                 // written after settling
    Option<&'static str>, // detail: None = no detail, Some(s) = contains s
);

/// Create: goal Present, a written node's prior Absent.
/// Delete: goal Absent, a written node's prior Present.
#[rustfmt::skip]
const FORWARD: &[ForwardRow] = &[
    // name                                                op      prior    write                 cancel read-back      fate       prior'   state    written detail contains
    ("create, already present: nothing sent",              Create, Present, Write::Nothing,       false, None,          Left,      Present, Present, false,  None),
    ("create 201",                                         Create, Absent,  Write::Applied,       false, None,          Undo,      Absent,  Present, true,   None),
    ("create 201, cancelled",                              Create, Absent,  Write::Applied,       true,  None,          Undo,      Absent,  Present, true,   None),
    ("create 400 on the only attempt",                     Create, Absent,  only(Some(400)),      false, None,          Left,      Present, Present, false,  Some(FOREIGN)),
    ("create 400 on the only attempt, cancelled",          Create, Absent,  only(Some(400)),      true,  None,          Left,      Present, Present, false,  Some(FOREIGN)),
    ("create 409 on the only attempt",                     Create, Absent,  only(Some(409)),      false, None,          Left,      Present, Present, false,  Some(FOREIGN)),
    ("create 409 on the only attempt, cancelled",          Create, Absent,  only(Some(409)),      true,  None,          Left,      Present, Present, false,  Some(FOREIGN)),
    ("create 400 after a 429 (proved unapplied)",          Create, Absent,  after_429(Some(400)), false, None,          Left,      Present, Present, false,  Some(FOREIGN)),
    ("create 400 after a 503, reads present",              Create, Absent,  after_503(Some(400)), false, Some(Present), Undo,      Absent,  Present, true,   Some("answered 400")),
    ("create 400 after a 503, reads absent",               Create, Absent,  after_503(Some(400)), false, Some(Absent),  Left,      Absent,  Absent,  true,   Some("answered 400")),
    ("create 400 after a 503, read fails",                 Create, Absent,  after_503(Some(400)), false, Some(Unknown), ReadFirst, Absent,  Unknown, true,   Some(READ_FAILED)),
    ("create 400 after a 503, cancelled",                  Create, Absent,  after_503(Some(400)), true,  None,          ReadFirst, Absent,  Unknown, true,   Some(CANCELLED)),
    ("create 409 after a 503, reads present",              Create, Absent,  after_503(Some(409)), false, Some(Present), Undo,      Absent,  Present, true,   Some("answered 409")),
    ("create 409 after a 503, reads absent",               Create, Absent,  after_503(Some(409)), false, Some(Absent),  Left,      Absent,  Absent,  true,   Some("answered 409")),
    ("create 409 after a 503, read fails",                 Create, Absent,  after_503(Some(409)), false, Some(Unknown), ReadFirst, Absent,  Unknown, true,   Some(READ_FAILED)),
    ("create 409 after a 503, cancelled",                  Create, Absent,  after_503(Some(409)), true,  None,          ReadFirst, Absent,  Unknown, true,   Some(CANCELLED)),
    ("create 429 on every attempt",                        Create, Absent,  refused(Some(429)),   false, None,          Left,      Absent,  Absent,  false,  Some(NOT_APPLIED)),
    ("create 429 on every attempt, cancelled",             Create, Absent,  refused(Some(429)),   true,  None,          Left,      Absent,  Absent,  false,  Some(NOT_APPLIED)),
    ("create connection refused every attempt",            Create, Absent,  refused(None),        false, None,          Left,      Absent,  Absent,  false,  Some(NOT_APPLIED)),
    ("create connection refused every attempt, cancelled", Create, Absent,  refused(None),        true,  None,          Left,      Absent,  Absent,  false,  Some(NOT_APPLIED)),
    ("create 500 on the only attempt, reads present",      Create, Absent,  only(Some(500)),      false, Some(Present), Undo,      Absent,  Present, true,   Some("answered 500")),
    ("create 500 on the only attempt, reads absent",       Create, Absent,  only(Some(500)),      false, Some(Absent),  Left,      Absent,  Absent,  true,   Some("answered 500")),
    ("create 500 on the only attempt, read fails",         Create, Absent,  only(Some(500)),      false, Some(Unknown), ReadFirst, Absent,  Unknown, true,   Some(READ_FAILED)),
    ("create 500 on the only attempt, cancelled",          Create, Absent,  only(Some(500)),      true,  None,          ReadFirst, Absent,  Unknown, true,   Some(CANCELLED)),
    ("create 503 after a 503, reads present",              Create, Absent,  after_503(Some(503)), false, Some(Present), Undo,      Absent,  Present, true,   Some("answered 503")),
    ("create 503 after a 503, reads absent",               Create, Absent,  after_503(Some(503)), false, Some(Absent),  Left,      Absent,  Absent,  true,   Some("answered 503")),
    ("create 503 after a 503, read fails",                 Create, Absent,  after_503(Some(503)), false, Some(Unknown), ReadFirst, Absent,  Unknown, true,   Some(READ_FAILED)),
    ("create 503 after a 503, cancelled",                  Create, Absent,  after_503(Some(503)), true,  None,          ReadFirst, Absent,  Unknown, true,   Some(CANCELLED)),
    ("create timed out, reads present",                    Create, Absent,  only(None),           false, Some(Present), Undo,      Absent,  Present, true,   Some("no answer")),
    ("create timed out, reads absent",                     Create, Absent,  only(None),           false, Some(Absent),  Left,      Absent,  Absent,  true,   Some("no answer")),
    ("create timed out, read fails",                       Create, Absent,  only(None),           false, Some(Unknown), ReadFirst, Absent,  Unknown, true,   Some(READ_FAILED)),
    ("create timed out, cancelled",                        Create, Absent,  only(None),           true,  None,          ReadFirst, Absent,  Unknown, true,   Some(CANCELLED)),
    ("create 404 (a delete's goal answer), reads present", Create, Absent,  only(Some(404)),      false, Some(Present), Undo,      Absent,  Present, true,   Some("answered 404")),
    ("create 404 (a delete's goal answer), cancelled",     Create, Absent,  only(Some(404)),      true,  None,          ReadFirst, Absent,  Unknown, true,   Some(CANCELLED)),

    ("delete, already absent: nothing sent",               Delete, Absent,  Write::Nothing,       false, None,          Left,      Absent,  Absent,  false,  None),
    ("delete 200",                                         Delete, Present, Write::Applied,       false, None,          Undo,      Present, Absent,  true,   None),
    ("delete 200, cancelled",                              Delete, Present, Write::Applied,       true,  None,          Undo,      Present, Absent,  true,   None),
    ("delete 404 on the only attempt",                     Delete, Present, only(Some(404)),      false, None,          Left,      Absent,  Absent,  false,  Some(FOREIGN)),
    ("delete 404 on the only attempt, cancelled",          Delete, Present, only(Some(404)),      true,  None,          Left,      Absent,  Absent,  false,  Some(FOREIGN)),
    ("delete 410 on the only attempt",                     Delete, Present, only(Some(410)),      false, None,          Left,      Absent,  Absent,  false,  Some(FOREIGN)),
    ("delete 410 on the only attempt, cancelled",          Delete, Present, only(Some(410)),      true,  None,          Left,      Absent,  Absent,  false,  Some(FOREIGN)),
    ("delete 404 after a 429 (proved unapplied)",          Delete, Present, after_429(Some(404)), false, None,          Left,      Absent,  Absent,  false,  Some(FOREIGN)),
    ("delete 404 after a 503, reads present",              Delete, Present, after_503(Some(404)), false, Some(Present), Left,      Present, Present, true,   Some("answered 404")),
    ("delete 404 after a 503, reads absent",               Delete, Present, after_503(Some(404)), false, Some(Absent),  Undo,      Present, Absent,  true,   Some("answered 404")),
    ("delete 404 after a 503, read fails",                 Delete, Present, after_503(Some(404)), false, Some(Unknown), ReadFirst, Present, Unknown, true,   Some(READ_FAILED)),
    ("delete 404 after a 503, cancelled",                  Delete, Present, after_503(Some(404)), true,  None,          ReadFirst, Present, Unknown, true,   Some(CANCELLED)),
    ("delete 410 after a 503, reads present",              Delete, Present, after_503(Some(410)), false, Some(Present), Left,      Present, Present, true,   Some("answered 410")),
    ("delete 410 after a 503, reads absent",               Delete, Present, after_503(Some(410)), false, Some(Absent),  Undo,      Present, Absent,  true,   Some("answered 410")),
    ("delete 410 after a 503, read fails",                 Delete, Present, after_503(Some(410)), false, Some(Unknown), ReadFirst, Present, Unknown, true,   Some(READ_FAILED)),
    ("delete 410 after a 503, cancelled",                  Delete, Present, after_503(Some(410)), true,  None,          ReadFirst, Present, Unknown, true,   Some(CANCELLED)),
    ("delete 429 on every attempt",                        Delete, Present, refused(Some(429)),   false, None,          Left,      Present, Present, false,  Some(NOT_APPLIED)),
    ("delete 429 on every attempt, cancelled",             Delete, Present, refused(Some(429)),   true,  None,          Left,      Present, Present, false,  Some(NOT_APPLIED)),
    ("delete connection refused every attempt",            Delete, Present, refused(None),        false, None,          Left,      Present, Present, false,  Some(NOT_APPLIED)),
    ("delete connection refused every attempt, cancelled", Delete, Present, refused(None),        true,  None,          Left,      Present, Present, false,  Some(NOT_APPLIED)),
    ("delete 500 on the only attempt, reads present",      Delete, Present, only(Some(500)),      false, Some(Present), Left,      Present, Present, true,   Some("answered 500")),
    ("delete 500 on the only attempt, reads absent",       Delete, Present, only(Some(500)),      false, Some(Absent),  Undo,      Present, Absent,  true,   Some("answered 500")),
    ("delete 500 on the only attempt, read fails",         Delete, Present, only(Some(500)),      false, Some(Unknown), ReadFirst, Present, Unknown, true,   Some(READ_FAILED)),
    ("delete 500 on the only attempt, cancelled",          Delete, Present, only(Some(500)),      true,  None,          ReadFirst, Present, Unknown, true,   Some(CANCELLED)),
    ("delete 503 after a 503, reads present",              Delete, Present, after_503(Some(503)), false, Some(Present), Left,      Present, Present, true,   Some("answered 503")),
    ("delete 503 after a 503, reads absent",               Delete, Present, after_503(Some(503)), false, Some(Absent),  Undo,      Present, Absent,  true,   Some("answered 503")),
    ("delete 503 after a 503, read fails",                 Delete, Present, after_503(Some(503)), false, Some(Unknown), ReadFirst, Present, Unknown, true,   Some(READ_FAILED)),
    ("delete 503 after a 503, cancelled",                  Delete, Present, after_503(Some(503)), true,  None,          ReadFirst, Present, Unknown, true,   Some(CANCELLED)),
    ("delete timed out, reads present",                    Delete, Present, only(None),           false, Some(Present), Left,      Present, Present, true,   Some("no answer")),
    ("delete timed out, reads absent",                     Delete, Present, only(None),           false, Some(Absent),  Undo,      Present, Absent,  true,   Some("no answer")),
    ("delete timed out, read fails",                       Delete, Present, only(None),           false, Some(Unknown), ReadFirst, Present, Unknown, true,   Some(READ_FAILED)),
    ("delete timed out, cancelled",                        Delete, Present, only(None),           true,  None,          ReadFirst, Present, Unknown, true,   Some(CANCELLED)),
    ("delete 400 (a create's goal answer), reads absent",  Delete, Present, only(Some(400)),      false, Some(Absent),  Undo,      Present, Absent,  true,   Some("answered 400")),
    ("delete 400 (a create's goal answer), cancelled",     Delete, Present, only(Some(400)),      true,  None,          ReadFirst, Present, Unknown, true,   Some(CANCELLED)),
];

#[test]
fn forward_writes_settle_and_pick_the_nodes_to_undo() {
    let mut names = HashSet::new();
    for &(name, op, prior, write, cancelled, read, fate, prior_after, state, written, detail) in
        FORWARD
    {
        assert!(names.insert(name), "{name}: row named twice");
        assert_eq!(
            prior != op.goal(),
            !matches!(write, Write::Nothing),
            "{name}: the transaction writes exactly where prior != goal"
        );
        let work = run_forward(name, op, prior, write, cancelled, read);

        assert_eq!(work.needs_undo(), fate != Left, "{name}: needs_undo");
        assert_eq!(work.prior, prior_after, "{name}: prior after settling");
        assert_eq!(work.state, state, "{name}: state");
        assert_eq!(work.written, written, "{name}: written");
        if work.needs_undo() {
            assert_eq!(
                Some(undo_start(work.state)),
                fate.start(),
                "{name}: undo_start"
            );
        }
        match detail {
            None => assert_eq!(work.detail, None, "{name}: detail"),
            Some(part) => assert!(
                work.detail.as_deref().is_some_and(|d| d.contains(part)),
                "{name}: detail {:?} should contain {part:?}",
                work.detail
            ),
        }
        // An unclear answer's own detail always leads the node's detail.
        if let Write::Unresolved { status, .. } = write {
            let answer = answered(status);
            assert!(
                work.detail
                    .as_deref()
                    .is_some_and(|d| d.starts_with(&answer)),
                "{name}: detail {:?} should start with {answer:?}",
                work.detail
            );
        }
    }
}

#[test]
fn a_node_never_written_is_never_undone() {
    let unread = NodeWork::unread();
    assert_eq!((unread.prior, unread.state), (Unknown, Unknown));
    assert!(!unread.written);
    assert!(!unread.needs_undo());

    // An unreadable prior stops the transaction before any write.
    let failed = NodeWork::from_prior(read_answer(Unknown));
    assert_eq!((failed.prior, failed.state), (Unknown, Unknown));
    assert_eq!(failed.record, None);
    assert_eq!(
        failed.detail.as_deref(),
        Some("read failed: read timed out")
    );
    assert!(!failed.written);
    assert!(!failed.needs_undo());

    // A delete keeps the record it read, to restore it exactly.
    let present = NodeWork::from_prior(read_answer(Present));
    assert_eq!(present.record, Some(json!({"groupId": "g"})));
    assert_eq!(present.detail, None);
    assert_eq!(NodeWork::from_prior(read_answer(Absent)).record, None);
}

// ---------------------------------------------------------- the undo table

type UndoRow = (
    &'static str,         // name
    Change,               // op whose change is undone
    Write,                // the undo's answer
    NodeState,            // the read after the undo (Unknown = the read fails)
    NodeState,            // state_after_undo
    Option<&'static str>, // None = Undone(state); Some(detail) = Failed { state, detail }
);

/// Create's undo is a delete (back to Absent); delete's is a create (back
/// to Present).
#[rustfmt::skip]
const UNDO: &[UndoRow] = &[
    // name                                       op      undo             read after state    failure detail
    ("create undo applied, reads present",        Create, Write::Applied,  Present,   Present, Some(STILL_HOLDS)),
    ("create undo applied, reads absent",         Create, Write::Applied,  Absent,    Absent,  None),
    ("create undo applied, read fails",           Create, Write::Applied,  Unknown,   Absent,  None),
    ("create undo 500, reads present",            Create, only(Some(500)), Present,   Present, Some("compensation failed: answered 500")),
    ("create undo 500, reads absent",             Create, only(Some(500)), Absent,    Absent,  None),
    ("create undo 500, read fails",               Create, only(Some(500)), Unknown,   Unknown, Some("compensation failed: answered 500; read failed: read timed out")),
    ("create undo without answer, reads present", Create, only(None),      Present,   Present, Some("compensation failed: no answer")),
    ("create undo without answer, reads absent",  Create, only(None),      Absent,    Absent,  None),
    ("create undo without answer, read fails",    Create, only(None),      Unknown,   Unknown, Some("compensation failed: no answer; read failed: read timed out")),

    ("delete undo applied, reads present",        Delete, Write::Applied,  Present,   Present, None),
    ("delete undo applied, reads absent",         Delete, Write::Applied,  Absent,    Absent,  Some(STILL_HOLDS)),
    ("delete undo applied, read fails",           Delete, Write::Applied,  Unknown,   Present, None),
    ("delete undo 500, reads present",            Delete, only(Some(500)), Present,   Present, None),
    ("delete undo 500, reads absent",             Delete, only(Some(500)), Absent,    Absent,  Some("compensation failed: answered 500")),
    ("delete undo 500, read fails",               Delete, only(Some(500)), Unknown,   Unknown, Some("compensation failed: answered 500; read failed: read timed out")),
    ("delete undo without answer, reads present", Delete, only(None),      Present,   Present, None),
    ("delete undo without answer, reads absent",  Delete, only(None),      Absent,    Absent,  Some("compensation failed: no answer")),
    ("delete undo without answer, read fails",    Delete, only(None),      Unknown,   Unknown, Some("compensation failed: no answer; read failed: read timed out")),
];

#[test]
fn an_undo_comes_to_undone_or_failed() {
    let mut names = HashSet::new();
    for &(name, op, undo, read, state, failure) in UNDO {
        assert!(names.insert(name), "{name}: row named twice");
        let Some((undo, _)) = undo.answer() else {
            panic!("{name}: an undo row sends a write");
        };
        assert_eq!(
            state_after_undo(op, &undo, read),
            state,
            "{name}: state_after_undo"
        );

        let expected = match failure {
            None => Compensation::Undone(state),
            Some(detail) => Compensation::Failed {
                state,
                detail: detail.to_string(),
            },
        };
        let outcome = compensation(op, &undo, &read_answer(read));
        assert_eq!(outcome, expected, "{name}: compensation");

        let mut work = written_node(op);
        assert!(
            work.needs_undo(),
            "{name}: the node holds this run's change"
        );
        work.compensate(outcome);
        assert!(work.compensated, "{name}: an undo was sent");
        assert_eq!(work.state, state, "{name}: state after compensating");
        assert_eq!(
            work.detail.as_deref(),
            failure,
            "{name}: detail after compensating"
        );
        assert_eq!(
            work.needs_undo(),
            failure.is_some(),
            "{name}: still in doubt"
        );
    }
}

#[test]
fn not_needed_and_cut_off_send_nothing() {
    for op in [Create, Delete] {
        // A write that may have landed, its group rolling back: unknown.
        let work = run_forward(
            "cancelled",
            op,
            op.changed_from(),
            only(Some(503)),
            true,
            None,
        );
        assert_eq!(work.state, Unknown, "{op}");
        assert!(work.needs_undo(), "{op}");
        assert_eq!(undo_start(work.state), UndoStart::ReadFirst, "{op}");
        let forward_detail = Some(format!("answered 503{CANCELLED}"));
        assert_eq!(work.detail, forward_detail, "{op}");

        // The rollback's first read finds the node at its prior state.
        let mut not_needed = work.clone();
        not_needed.compensate(Compensation::NotNeeded(op.changed_from()));
        assert!(!not_needed.compensated, "{op}: nothing was sent");
        assert_eq!(not_needed.state, op.changed_from(), "{op}");
        assert_eq!(
            not_needed.detail, forward_detail,
            "{op}: the detail is kept"
        );
        assert!(!not_needed.needs_undo(), "{op}");

        // The shutdown budget runs out first, on an unknown and on a known node.
        for before in [work, written_node(op)] {
            let mut cut = before;
            cut.compensate(Compensation::CutOff(
                "cut off: the shutdown budget ran out".into(),
            ));
            assert!(!cut.compensated, "{op}: nothing was sent");
            assert_eq!(cut.state, Unknown, "{op}");
            assert_eq!(
                cut.detail.as_deref(),
                Some("cut off: the shutdown budget ran out"),
                "{op}"
            );
            assert!(cut.needs_undo(), "{op}: still in doubt");
        }
    }
}

// ----------------------------------------------------------- end to end

/// One operation across four nodes: one already at the goal (no write),
/// one written and applied, one another writer changed first (the only
/// attempt answers the goal's status), and one refused on every attempt,
/// which is why the group does not commit. Only the applied node is undone,
/// and afterwards every node is at its prior state.
#[test]
fn the_rollback_set_is_exactly_the_applied_node() {
    for op in [Create, Delete] {
        let (goal, from) = (op.goal(), op.changed_from());
        let at_goal_status = match op {
            Create => 409,
            Delete => 410,
        };
        let mut nodes: Vec<NodeWork> = [goal, from, from, from]
            .into_iter()
            .map(|prior| NodeWork::from_prior(read_answer(prior)))
            .collect();
        let answers = [
            Write::Nothing,
            Write::Applied,
            only(Some(at_goal_status)),
            refused(Some(429)),
        ];

        // Apply: write only where prior != goal, marked written before sending.
        for (work, write) in nodes.iter_mut().zip(answers) {
            if work.prior == goal {
                assert!(matches!(write, Write::Nothing), "{op}");
                continue;
            }
            work.written = true;
            let (answer, attempts) = write.answer().unwrap();
            match settle_write(op, answer, &attempts, false) {
                Settled::Step(step) => work.settle(step),
                other => panic!("{op}: no read-back expected, got {other:?}"),
            }
        }
        let states: Vec<NodeState> = nodes.iter().map(|w| w.state).collect();
        assert_eq!(
            states,
            [goal, goal, goal, from],
            "{op}: the last node missed the goal"
        );
        let written: Vec<bool> = nodes.iter().map(|w| w.written).collect();
        assert_eq!(written, [false, true, false, false], "{op}");
        assert_eq!(
            nodes[2].prior, goal,
            "{op}: the foreign node's prior is the other writer's state"
        );

        // Roll back.
        let rollback: Vec<usize> = (0..nodes.len())
            .filter(|&i| nodes[i].needs_undo())
            .collect();
        assert_eq!(rollback, [1], "{op}: the rollback set");
        assert_eq!(undo_start(nodes[1].state), UndoStart::Undo, "{op}");
        if op == Delete {
            assert_eq!(
                nodes[1].record,
                Some(json!({"groupId": "g"})),
                "{op}: the record to restore"
            );
        }
        let outcome = compensation(op, &WriteAnswer::Applied, &read_answer(from));
        assert_eq!(outcome, Compensation::Undone(from), "{op}");
        nodes[1].compensate(outcome);

        let compensated: Vec<bool> = nodes.iter().map(|w| w.compensated).collect();
        assert_eq!(compensated, [false, true, false, false], "{op}");
        for (i, work) in nodes.iter().enumerate() {
            assert_eq!(
                work.state, work.prior,
                "{op}: node {i} is back at its prior state"
            );
            assert!(!work.needs_undo(), "{op}: node {i}");
        }
        // I2: the node already at the goal, and the other writer's change, are kept.
        assert_eq!((nodes[0].state, nodes[2].state), (goal, goal), "{op}");
    }
}
