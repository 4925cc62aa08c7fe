//! How an `OPERATION` becomes the run's phases (docs/TRANSACTIONS.md,
//! "Operations"):
//!
//! | operation | phases |
//! |---|---|
//! | `create`, `delete` | the listed ids, each a transaction (a plan with `DRY_RUN`) |
//! | `verify` | the listed ids, or without ids every group the nodes list; each verified |
//! | `reconcile` | the listed ids, each a create; then, with `PRUNE=true`, every group the nodes list that the ids do not, each a delete |
//!
//! A reconcile lists every node before any write, so that the prune's
//! guard (`PRUNE_MAX`) is decided before anything changes: when it trips,
//! no group is pruned, and the listed groups are still made present.

use super::control::Control;
use super::discovery::{list_every_node, Found};
use super::id_list::GroupIds;
use super::prior::{list_priors, ListedPriors, ListsUnavailable, PriorSource};
use super::run::Phase;
use crate::domain::{Change, GroupId, Operation, Shard, Task};
use crate::node_api::NodeClient;
use crate::output::report::{Listing, Unlisted};

/// The target of these lines, which `LOG_LEVEL` directives name: named for
/// reconcile, the phases' main user, and kept as part of the log interface.
const LOG_TARGET: &str = "api_consumer::reconcile";

/// How many ids a log line or the report names of a longer list.
const FIRST_IDS: usize = 10;

/// What the run is asked to do.
#[derive(Debug, Clone)]
pub struct Request {
    pub operation: Operation,
    pub dry_run: bool,
    pub prune: bool,
    pub prune_max: u64,
    pub prior_source: PriorSource,
    pub ids: GroupIds,
}

/// The run's phases, and what was learnt preparing them.
#[derive(Debug, Default)]
pub struct Prepared {
    pub phases: Vec<Phase>,
    pub listing: Option<Listing>,
    pub unlisted: Option<Unlisted>,
    /// Something the run could not do as asked (a verify without ids that
    /// could not list a node, a prune refused): the exit code is at least 1.
    /// A reconcile without prune that cannot list a node only says so: it
    /// needs the lists for its report, not for its work.
    pub incomplete: bool,
    /// The transactions' prior states from the node lists, when they come
    /// from there (`PRIOR_STATE`).
    pub priors: Option<ListedPriors>,
    /// Why no group may start: `PRIOR_STATE=list` and a node's list could
    /// not be had.
    pub refused: Option<String>,
}

/// Prepares the phases of `request`; lists the nodes where the operation
/// needs it.
pub async fn prepare(client: &NodeClient, request: Request, control: &Control) -> Prepared {
    let source = request.prior_source;
    let mut prepared = phases_of(client, request, control).await;
    let transactions: Vec<&GroupIds> = prepared
        .phases
        .iter()
        .filter(|phase| matches!(phase.task, Task::Apply(_)))
        .map(|phase| &phase.ids)
        .collect();
    if !transactions.is_empty() {
        match list_priors(client, &transactions, source, control).await {
            Ok(priors) => prepared.priors = priors,
            // A stop meanwhile (deadline, signal) says so itself.
            Err(_) if control.stop.is_cancelled() => {}
            Err(ListsUnavailable(why)) => {
                tracing::error!(target: LOG_TARGET, reason = %why, "PRIOR_STATE=list, but a node's list cannot be had; no group starts");
                prepared.refused = Some(why);
            }
        }
    }
    prepared
}

async fn phases_of(client: &NodeClient, request: Request, control: &Control) -> Prepared {
    let (ids, dry_run) = (request.ids, request.dry_run);
    let apply = |change| match dry_run {
        true => Task::Plan(change),
        false => Task::Apply(change),
    };
    match request.operation {
        Operation::Create => one_phase(ids, apply(Change::Create)),
        Operation::Delete => one_phase(ids, apply(Change::Delete)),
        // A list given counts even when none of its ids is this shard's.
        Operation::Verify if ids.listed() > 0 => one_phase(ids, Task::Verify),
        Operation::Verify => verify_every_listed_group(client, control, ids.shard()).await,
        Operation::Reconcile => {
            let found = this_shards(list_every_node(client, control).await, ids.shard());
            let (prune, max) = (request.prune, request.prune_max);
            let (mut prepared, pruned) = unlisted_groups(found, &ids, prune, max);
            let task = apply(Change::Create);
            prepared.phases.push(Phase { ids, task });
            if let Some(ids) = pruned {
                let task = apply(Change::Delete);
                prepared.phases.push(Phase { ids, task });
            }
            prepared
        }
    }
}

fn one_phase(ids: GroupIds, task: Task) -> Prepared {
    Prepared {
        phases: vec![Phase { ids, task }],
        ..Prepared::default()
    }
}

/// Keeps of what the nodes list only `shard`'s groups: a shard verifies and
/// prunes its own groups and no other, and counts them for `PRUNE_MAX`.
fn this_shards(mut found: Found, shard: Shard) -> Found {
    if shard.is_split() {
        found.groups.retain(|id, _| shard.owns(id.as_str()));
        found.listing.groups_found = found.groups.len() as u64;
    }
    found
}

async fn verify_every_listed_group(
    client: &NodeClient,
    control: &Control,
    shard: Shard,
) -> Prepared {
    let found = this_shards(list_every_node(client, control).await, shard);
    let incomplete = !found.complete();
    tracing::info!(target: LOG_TARGET, groups = found.groups.len(),
        nodes_listed = found.listing.nodes_listed, "verifying every group the nodes list");
    let ids = GroupIds::discovered(found.groups.into_keys().collect());
    Prepared {
        listing: Some(found.listing),
        incomplete,
        ..one_phase(ids, Task::Verify)
    }
}

/// The groups the nodes list that `desired` does not, reported; with
/// `prune`, the ones to prune, unless the guard trips.
fn unlisted_groups(
    mut found: Found,
    desired: &GroupIds,
    prune: bool,
    prune_max: u64,
) -> (Prepared, Option<GroupIds>) {
    let mut refusal = (!found.complete()).then(|| {
        "a node's list could not be had, so the groups not listed are not known".to_string()
    });
    for entry in desired.entries() {
        found.groups.remove(&entry.id);
    }
    // With a node's list missing, a group on every node that listed counts
    // as consistent here: the report's `listing.failures` says why.
    let inconsistent: Vec<&GroupId> = found
        .groups
        .iter()
        .filter(|(_, &count)| found.on_some_nodes_only(count))
        .map(|(id, _)| id)
        .collect();
    for id in &inconsistent {
        tracing::warn!(target: LOG_TARGET, group_id = id.as_str(), "group not listed and on some nodes only");
    }
    let mut unlisted = Unlisted {
        groups: found.groups.len() as u64,
        inconsistent: inconsistent.len() as u64,
        inconsistent_first: inconsistent
            .iter()
            .take(FIRST_IDS)
            .map(|&id| id.clone())
            .collect(),
        ..Unlisted::default()
    };
    let count = unlisted.groups;
    if refusal.is_none() && count > prune_max {
        refusal = Some(format!(
            "{count} groups would be pruned, more than PRUNE_MAX ({prune_max})"
        ));
    }
    let mut prepared = Prepared {
        listing: Some(std::mem::take(&mut found.listing)),
        ..Prepared::default()
    };
    let mut pruned = None;
    if !prune {
        tracing::info!(target: LOG_TARGET, unlisted = count, unlisted_inconsistent = unlisted.inconsistent, "groups not listed are left alone (PRUNE is off)");
    } else if let Some(why) = refusal {
        let first: Vec<GroupId> = found.groups.keys().take(FIRST_IDS).cloned().collect();
        let shown: Vec<&str> = first.iter().map(GroupId::as_str).collect();
        tracing::error!(target: LOG_TARGET, unlisted = count, prune_max, first = shown.join(" ").as_str(), reason = %why, "no group is pruned");
        unlisted.prune_refused = Some(why);
        unlisted.prune_first = first;
        prepared.incomplete = true;
    } else {
        tracing::info!(target: LOG_TARGET, unlisted = count, "pruning the groups not listed");
        pruned = Some(GroupIds::discovered(found.groups.into_keys().collect()));
    }
    prepared.unlisted = Some(unlisted);
    (prepared, pruned)
}
