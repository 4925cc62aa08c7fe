//! The prior state of a whole batch from node lists (`PRIOR_STATE`), so that
//! a group costs one write per node instead of a read and a write.
//!
//! Before the first group starts, every node is listed once
//! (`GET /v1/groups`), and what each list says of the batch's ids is kept:
//! nothing of the groups outside the batch, so memory follows the batch, not
//! what the nodes hold (docs/TRANSACTIONS.md, "Prior state from lists").
//! A transaction then takes its group's entry and reads only the nodes the
//! lists cannot answer for:
//!
//! - a node that does not list (or whose list failed) is read, as always;
//! - a delete reads a node that holds the group when its list gave the id
//!   alone: the record a rollback restores must be the exact one, and only
//!   a listed record or a read has it;
//! - an id listed again in the batch is read on every node: its earlier
//!   entry may have changed the nodes since they were listed (the entry is
//!   taken by the first transaction of the id).
//!
//! What is kept is, per entry of the batch, the nodes that hold its id,
//! found through the batch's entries sorted by id (some 12 bytes an entry
//! while the nodes are listed), so the lists cost far less than the ids
//! themselves.
//!
//! The lists are taken once, at the start: the single-writer assumption
//! (docs/TRANSACTIONS.md, "Outside concurrent writers") covers a group's
//! state from then on, and a long run only widens the window in which an
//! outside writer's change can go unseen. The crash journal records the prior state wherever it came
//! from. A listed record is taken as the record a get would answer: a node
//! whose list gives shorter records than its get should list ids alone (a
//! delete then reads it), or be run with `PRIOR_STATE=read`.

use serde_json::Value;

use super::control::Control;
use super::discovery::list_node;
use super::id_list::GroupIds;
use crate::domain::{GroupId, NodeState};
use crate::node_api::{Node, NodeClient};

/// The target these log lines carry, which `LOG_LEVEL` directives name.
const LOG_TARGET: &str = "api_consumer::prior";

/// `PRIOR_STATE`: where a transaction's prior state comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PriorSource {
    /// Lists for a batch of at least [`AUTO_MIN_ENTRIES`] and at most
    /// [`MAX_LISTED_ENTRIES`] entries, from the nodes that list; reads
    /// otherwise.
    Auto,
    /// Lists from every node; a node that cannot list stops the run before
    /// its first group.
    List,
    /// One read per group and node.
    Read,
}

/// Below this many entries, `auto` reads: listing every group a node holds
/// costs more than a few reads.
pub const AUTO_MIN_ENTRIES: u64 = 64;

/// Above this many entries, `auto` reads and `list` is refused: what is
/// kept of the lists grows with the batch (some 100 bytes an entry).
pub const MAX_LISTED_ENTRIES: u64 = 1_000_000;

/// How one node's prior state is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeSource {
    Listed,
    Read,
}

impl NodeSource {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeSource::Listed => "list",
            NodeSource::Read => "read",
        }
    }
}

/// What a list says of one group on one node.
#[derive(Debug, Clone, PartialEq)]
pub enum Listed {
    Absent,
    /// Present; with the record when the node listed records.
    Present(Option<Value>),
}

/// One group's prior state as far as the lists know it, per node; `None`
/// for a node that must be read.
pub type GroupPriors = Vec<Option<Listed>>;

/// The listing nodes that hold one group, with the record each listed.
type Holders = Vec<(usize, Option<Value>)>;

/// The batch's prior states from the lists.
#[derive(Debug)]
pub struct ListedPriors {
    sources: Vec<NodeSource>,
    /// Per entry of the batch, in order: the listing nodes that hold its
    /// id; `None` once taken, and for an id listed again (every node of
    /// such an entry is read: its earlier entry may have changed them).
    held: Vec<Option<Holders>>,
}

/// Why the lists cannot give the batch's prior states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListsUnavailable(pub String);

impl ListedPriors {
    /// How each node's prior state is known.
    pub fn sources(&self) -> &[NodeSource] {
        &self.sources
    }

    /// Takes the priors of the batch's entry `index` (counted over the
    /// batch's id lists in order): what the lists say, or `None` when every
    /// node must be read.
    pub fn take(&mut self, index: usize) -> Option<GroupPriors> {
        let held = self.held.get_mut(index)?.take()?;
        let mut priors: GroupPriors = self
            .sources
            .iter()
            .map(|source| (*source == NodeSource::Listed).then_some(Listed::Absent))
            .collect();
        for (node, record) in held {
            if let Some(prior) = priors.get_mut(node) {
                *prior = Some(Listed::Present(record));
            }
        }
        Some(priors)
    }
}

/// Lists every node for `batch` as `source` says; `Ok(None)` when the
/// prior states are to be read.
pub async fn list_priors(
    client: &NodeClient,
    batch: &[&GroupIds],
    source: PriorSource,
    control: &Control,
) -> Result<Option<ListedPriors>, ListsUnavailable> {
    let ids: Vec<&GroupId> = batch
        .iter()
        .flat_map(|ids| ids.entries())
        .map(|entry| &entry.id)
        .collect();
    let entries = ids.len() as u64;
    match source {
        PriorSource::Read => return Ok(None),
        PriorSource::Auto if !(AUTO_MIN_ENTRIES..=MAX_LISTED_ENTRIES).contains(&entries) => {
            return Ok(None)
        }
        PriorSource::List if entries > MAX_LISTED_ENTRIES => {
            return Err(ListsUnavailable(format!(
                "the batch has {entries} entries; prior state from lists is kept for at most \
                 {MAX_LISTED_ENTRIES} (PRIOR_STATE=auto or read)"
            )))
        }
        PriorSource::Auto | PriorSource::List => {}
    }
    let batch = ById::new(ids);
    let mut held = batch.first_entries();
    let mut sources = Vec::with_capacity(client.nodes().len());
    for (index, node) in client.nodes().iter().enumerate() {
        let name = node.name();
        match keep_batch_holders(client, (index, node), &batch, &mut held, control).await {
            Ok(listed) => {
                tracing::info!(target: LOG_TARGET, node = name, listed, "prior state from the node's list");
                sources.push(NodeSource::Listed);
            }
            Err(reason) if source == PriorSource::List => {
                return Err(ListsUnavailable(format!("{name}: {reason}")));
            }
            Err(reason) => {
                tracing::warn!(target: LOG_TARGET, node = name, reason = %reason, "the node's list cannot be had; its prior state is read per group");
                sources.push(NodeSource::Read);
            }
        }
    }
    Ok(Some(ListedPriors { sources, held }))
}

/// The batch's ids and their entries' indices sorted by id (then index), to
/// find an id's first entry.
struct ById<'a> {
    ids: Vec<&'a GroupId>,
    sorted: Vec<u32>,
}

impl<'a> ById<'a> {
    fn new(ids: Vec<&'a GroupId>) -> Self {
        // At most MAX_LISTED_ENTRIES entries, so an index fits.
        let mut sorted: Vec<u32> = (0..ids.len() as u32).collect();
        sorted.sort_unstable_by(|&a, &b| ids[a as usize].cmp(ids[b as usize]).then(a.cmp(&b)));
        Self { ids, sorted }
    }

    fn id(&self, index: u32) -> &str {
        self.ids.get(index as usize).map_or("", |id| id.as_str())
    }

    /// The first entry of `id` in the batch.
    fn first(&self, id: &str) -> Option<usize> {
        let at = self.sorted.partition_point(|&index| self.id(index) < id);
        let &index = self.sorted.get(at)?;
        (self.id(index) == id).then_some(index as usize)
    }

    /// An empty holder list for every first entry of an id, `None` for the
    /// entries that repeat an id.
    fn first_entries(&self) -> Vec<Option<Holders>> {
        let mut held = vec![None; self.ids.len()];
        for (at, &index) in self.sorted.iter().enumerate() {
            let repeat = at > 0 && self.id(self.sorted[at - 1]) == self.id(index);
            if let (false, Some(slot)) = (repeat, held.get_mut(index as usize)) {
                *slot = Some(Holders::new());
            }
        }
        held
    }
}

/// Lists one node and marks the batch's entries it holds; returns how many
/// ids it listed. On an error nothing of the node is kept.
async fn keep_batch_holders(
    client: &NodeClient,
    (index, node): (usize, &Node),
    batch: &ById<'_>,
    held: &mut [Option<Holders>],
    control: &Control,
) -> Result<usize, String> {
    let body = list_node(client, node, control).await?;
    let mut found = Vec::new();
    let mut listed = 0usize;
    // Only the batch's ids are kept; anything else the node holds is
    // dropped as it is read.
    body.for_each(true, |id, record| {
        listed += 1;
        if let Some(entry) = batch.first(&id) {
            found.push((entry, record));
        }
    })?;
    for (entry, record) in found {
        if let Some(Some(nodes)) = held.get_mut(entry) {
            // A node listing an id twice holds it once.
            if nodes.last().is_none_or(|(last, _)| *last != index) {
                nodes.push((index, record));
            }
        }
    }
    Ok(listed)
}

/// A node's prior state as a transaction starts from it: the listed state,
/// or `None` to read the node (for a delete, also a holder whose list gave
/// no record).
pub fn listed_prior(listed: Option<Listed>, deleting: bool) -> Option<(NodeState, Option<Value>)> {
    match listed? {
        Listed::Absent => Some((NodeState::Absent, None)),
        Listed::Present(None) if deleting => None,
        Listed::Present(record) => Some((NodeState::Present, record)),
    }
}
