//! Finding the groups the nodes hold, through `GET /v1/groups` on every
//! node: what a verify without ids checks, and where a reconcile finds the
//! groups its ids do not list.
//!
//! Nodes are listed one after another, so that at most one list body is in
//! memory at a time (up to [`crate::node_api::LIST_MAX_BYTES`]); what is
//! kept is one entry per distinct valid id with the number of nodes that
//! listed it. The bound is therefore one list body plus the distinct ids:
//! with 100,000 groups on each of 3 nodes the whole run peaks at 25 MB
//! (docs/BENCHMARKS.md, S6).

use std::collections::BTreeMap;

use super::control::Control;
use crate::domain::GroupId;
use crate::node_api::listing::ListBody;
use crate::node_api::{Node, NodeClient};
use crate::output::report::{ListFailure, Listing};

/// The target these log lines carry, which `LOG_LEVEL` directives name.
const LOG_TARGET: &str = "api_consumer::discovery";

/// What listing every node found.
#[derive(Debug, Default)]
pub struct Found {
    /// Every distinct valid id, with how many nodes listed it.
    pub groups: BTreeMap<GroupId, u32>,
    pub listing: Listing,
}

impl Found {
    /// Whether every node answered with its list: only then is a group
    /// absent from every list known to be on no node.
    pub fn complete(&self) -> bool {
        self.listing.failures.is_empty()
    }

    /// Whether the lists say the group is on some nodes only.
    pub fn on_some_nodes_only(&self, count: u32) -> bool {
        u64::from(count) < self.listing.nodes_listed
    }
}

/// Lists every node of `client`, one after another, until the run is
/// stopped.
pub async fn list_every_node(client: &NodeClient, control: &Control) -> Found {
    let mut found = Found::default();
    for node in client.nodes() {
        let name = node.name();
        match list_node(client, node, control)
            .await
            .and_then(|body| body.ids())
        {
            Ok(mut ids) => {
                ids.sort_unstable();
                ids.dedup();
                let listed = ids.len();
                let mut invalid = 0u64;
                for id in ids {
                    match GroupId::new(id) {
                        Ok(id) => *found.groups.entry(id).or_default() += 1,
                        Err(_) => invalid += 1,
                    }
                }
                if invalid > 0 {
                    tracing::warn!(target: LOG_TARGET, node = name, invalid_ids = invalid, "node lists ids that are not valid group ids; they are left alone");
                }
                tracing::info!(target: LOG_TARGET, node = name, groups = listed, "node listed");
                found.listing.nodes_listed += 1;
                found.listing.invalid_ids += invalid;
            }
            Err(reason) => fail(&mut found, name, reason),
        }
    }
    found.listing.groups_found = found.groups.len() as u64;
    found
}

/// One node's list, or why it cannot be had; given up when the run stops.
pub(super) async fn list_node(
    client: &NodeClient,
    node: &Node,
    control: &Control,
) -> Result<ListBody, String> {
    tokio::select! {
        biased;
        _ = control.stop.cancelled() => Err(control.stop_detail()),
        answer = client.list(node, &control.stop) => answer.into_body(),
    }
}

fn fail(found: &mut Found, node: &str, reason: String) {
    tracing::error!(target: LOG_TARGET, node, reason = %reason, "cannot list the node's groups");
    found.listing.failures.push(ListFailure {
        node: node.to_string(),
        reason,
    });
}
