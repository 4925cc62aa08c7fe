//! Work on several nodes at once: every step of a transaction, verify and
//! plan sends one request (or a few) to each node it concerns, all at the
//! same time, and must end when the run's kill token fires.

use std::future::Future;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio_util::sync::CancellationToken;

use super::control::Control;
use crate::domain::GroupId;
use crate::node_api::{NodeClient, ReadAnswer};

/// Runs every node's step at once: `steps` holds each node's index and its
/// step. The results come as the steps end, each with its node's index; a
/// step still running when `kill` fires ends in `cut_off()` instead.
pub(super) fn each_node<'a, T, F>(
    kill: &'a CancellationToken,
    steps: Vec<(usize, F)>,
    cut_off: impl Fn() -> T + Copy + 'a,
) -> FuturesUnordered<impl Future<Output = (usize, T)> + 'a>
where
    F: Future<Output = T> + 'a,
    T: 'a,
{
    steps
        .into_iter()
        .map(|(index, step)| async move {
            tokio::select! {
                biased;
                _ = kill.cancelled() => (index, cut_off()),
                done = step => (index, done),
            }
        })
        .collect()
}

/// [`each_node`]'s results in the order of `steps`.
pub(super) async fn each_node_in_order<'a, T, F>(
    kill: &'a CancellationToken,
    steps: Vec<(usize, F)>,
    cut_off: impl Fn() -> T + Copy + 'a,
) -> Vec<T>
where
    F: Future<Output = T> + 'a,
    T: 'a,
{
    let mut done: Vec<(usize, T)> = each_node(kill, steps, cut_off).collect().await;
    done.sort_by_key(|(index, _)| *index);
    done.into_iter().map(|(_, result)| result).collect()
}

/// Reads `group` on the nodes `pick` selects (by index), all at once, under
/// the run's abort; `None` when the run was aborted (or killed) first. A
/// transaction's prior-state reads, verify and plan go through here.
pub(super) async fn read_nodes(
    client: &NodeClient,
    group: &GroupId,
    pick: impl Fn(usize) -> bool,
    control: &Control,
) -> Option<Vec<ReadAnswer>> {
    let abort = &control.abort;
    let reads = client
        .nodes()
        .iter()
        .enumerate()
        .filter(|(index, _)| pick(*index))
        .map(|(index, node)| (index, client.read(node, group, abort)))
        .collect();
    let answers = each_node_in_order(&control.kill, reads, cut_off_read).await;
    (!abort.is_cancelled()).then_some(answers)
}

fn cut_off_read() -> ReadAnswer {
    ReadAnswer::Failed {
        status: None,
        detail: "cut off by the shutdown budget".to_string(),
    }
}
