//! Requests in flight bounded per Cassandra node, not only in total.
//!
//! Each write is sent to one replica of its partition, chosen here among the replicas (in the local
//! datacenter when one is configured) that are connected, preferring the one with the fewest writes in
//! flight, and pinned to it through its own execution profile. A permit of that node's semaphore is
//! held for the request's life, so a hot partition or a slow node cannot gather more than
//! `maxInFlightPerNode` of the worker's requests; other nodes' writes go on meanwhile. If the chosen
//! node fails mid-request, the driver's own plan (token-aware, the same as without pinning) takes over.
//!
//! A node that let a request time out (frozen, overloaded, cut off while its connections stay open)
//! is passed over for a while ([`Route::failed`]): the retry of that write, and the writes after it,
//! go to another replica instead of waiting on the same node again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scylla::client::execution_profile::{ExecutionProfile, ExecutionProfileHandle};
use scylla::client::session::Session;
use scylla::cluster::{ClusterState, Node, NodeRef};
use scylla::policies::load_balancing::{FallbackPlan, LoadBalancingPolicy, RoutingInfo};
use scylla::routing::{Shard, Token};
use scylla::statement::Consistency;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

/// Picks the pinned node first, then falls back to the session's own plan.
#[derive(Debug)]
struct Pinned {
    node: Arc<Node>,
    rest: Arc<dyn LoadBalancingPolicy>,
}

impl LoadBalancingPolicy for Pinned {
    fn pick<'a>(
        &'a self,
        request: &'a RoutingInfo,
        cluster: &'a ClusterState,
    ) -> Option<(NodeRef<'a>, Option<Shard>)> {
        if self.node.is_connected() {
            Some((&self.node, None))
        } else {
            self.rest.pick(request, cluster)
        }
    }

    fn fallback<'a>(
        &'a self,
        request: &'a RoutingInfo,
        cluster: &'a ClusterState,
    ) -> FallbackPlan<'a> {
        self.rest.fallback(request, cluster)
    }

    fn name(&self) -> String {
        "cassandra-sink pinned replica".to_owned()
    }
}

/// One node's bound and the profile that sends requests to it.
struct Slot {
    permits: Arc<Semaphore>,
    profile: ExecutionProfileHandle,
    /// Until when the node is passed over, after a request to it failed.
    suspect_until: Mutex<Option<Instant>>,
    /// How long a failure passes it over: long enough for the retry and the writes queued behind it
    /// to go elsewhere, short enough that a node back in service is used again soon.
    pause: Duration,
}

impl Slot {
    fn suspect(&self, now: Instant) -> bool {
        self.suspect_until
            .lock()
            .map(|until| until.is_some_and(|until| until > now))
            .unwrap_or(false)
    }

    fn set_suspect_until(&self, until: Option<Instant>) {
        if let Ok(mut suspect) = self.suspect_until.lock() {
            *suspect = until;
        }
    }
}

/// Where one write goes, and the permit that counts it against that node's bound.
pub struct Route {
    /// The profile pinning the request to the chosen replica; `None` lets the driver choose.
    pub profile: Option<ExecutionProfileHandle>,
    slot: Option<Arc<Slot>>,
    _permit: OwnedSemaphorePermit,
}

impl Route {
    /// The request on this route failed in a way another node may not (a timeout, an unavailable
    /// node): the node is passed over for a while (twice the request timeout, 1 to 30 s), unless no
    /// other replica is left.
    pub fn failed(&self) {
        if let Some(slot) = &self.slot {
            slot.set_suspect_until(Some(Instant::now() + slot.pause));
        }
    }

    /// The request on this route succeeded: the node is chosen as any other again.
    pub fn succeeded(&self) {
        if let Some(slot) = &self.slot {
            slot.set_suspect_until(None);
        }
    }
}

/// The candidate to route to, by index: a node not passed over before one that is, then the one with
/// the most room, then the first (the driver lists the primary replica first).
fn choose(candidates: &[(bool, usize)]) -> Option<usize> {
    candidates
        .iter()
        .enumerate()
        .max_by_key(|(index, (suspect, room))| (!suspect, *room, usize::MAX - index))
        .map(|(index, _)| index)
}

/// A table a statement writes: replicas depend on its keyspace's replication.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    /// Keyspace.
    pub keyspace: String,
    /// Table name.
    pub name: String,
}

/// Settings every pinned profile shares with the session's default one.
pub struct RouterSettings {
    /// Most requests in flight to one node.
    pub per_node: usize,
    /// Only replicas in this datacenter are chosen, as the session's policy does.
    pub local_datacenter: Option<String>,
    /// Consistency of the writes.
    pub consistency: Consistency,
    /// Request timeout of the writes.
    pub request_timeout: Duration,
    /// The session's load-balancing policy, for fallback.
    pub policy: Arc<dyn LoadBalancingPolicy>,
}

/// Chooses a replica for each write and bounds requests in flight per node.
pub struct Router {
    settings: RouterSettings,
    slots: Mutex<HashMap<Uuid, Arc<Slot>>>,
    /// For writes without a token (no partition key markers): bounded as one more node.
    unrouted: Arc<Semaphore>,
}

impl Router {
    /// A router with no node seen yet.
    pub fn new(settings: RouterSettings) -> Self {
        Self {
            unrouted: Arc::new(Semaphore::new(settings.per_node.max(1))),
            settings,
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, node: &Arc<Node>) -> Arc<Slot> {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        slots
            .entry(node.host_id)
            .or_insert_with(|| {
                let profile = ExecutionProfile::builder()
                    .load_balancing_policy(Arc::new(Pinned {
                        node: node.clone(),
                        rest: self.settings.policy.clone(),
                    }))
                    .consistency(self.settings.consistency)
                    .request_timeout(Some(self.settings.request_timeout))
                    .build()
                    .into_handle();
                Arc::new(Slot {
                    permits: Arc::new(Semaphore::new(self.settings.per_node.max(1))),
                    profile,
                    suspect_until: Mutex::new(None),
                    pause: (self.settings.request_timeout * 2)
                        .clamp(Duration::from_secs(1), Duration::from_secs(30)),
                })
            })
            .clone()
    }

    /// Waits for room on a replica of `token` in `table` and returns the route to it.
    pub async fn route(&self, session: &Session, target: Option<(&Table, Token)>) -> Route {
        let candidates: Vec<Arc<Slot>> = match target {
            Some((table, token)) => session
                .get_cluster_state()
                .get_token_endpoints(&table.keyspace, &table.name, token)
                .into_iter()
                .map(|(node, _)| node)
                .filter(|node| {
                    self.settings
                        .local_datacenter
                        .as_ref()
                        .is_none_or(|dc| node.datacenter.as_ref() == Some(dc))
                        && node.is_connected()
                })
                .map(|node| self.slot(&node))
                .collect(),
            None => Vec::new(),
        };
        let now = Instant::now();
        let states: Vec<(bool, usize)> = candidates
            .iter()
            .map(|slot| (slot.suspect(now), slot.permits.available_permits()))
            .collect();
        match choose(&states).map(|index| candidates[index].clone()) {
            Some(slot) => Route {
                profile: Some(slot.profile.clone()),
                _permit: acquire(&slot.permits).await,
                slot: Some(slot),
            },
            None => Route {
                profile: None,
                slot: None,
                _permit: acquire(&self.unrouted).await,
            },
        }
    }
}

async fn acquire(permits: &Arc<Semaphore>) -> OwnedSemaphorePermit {
    // The semaphores are never closed.
    match permits.clone().acquire_owned().await {
        Ok(permit) => permit,
        Err(_) => unreachable!("a router semaphore is never closed"),
    }
}

#[cfg(test)]
mod tests {
    use super::choose;

    #[test]
    fn the_replica_with_most_room_is_chosen_the_first_on_a_tie() {
        assert_eq!(choose(&[(false, 3), (false, 5), (false, 5)]), Some(1));
        assert_eq!(choose(&[(false, 4), (false, 4)]), Some(0));
        assert_eq!(choose(&[]), None);
    }

    #[test]
    fn a_node_passed_over_is_chosen_only_when_every_replica_is() {
        // The first replica timed out: its full room does not win it the next write.
        assert_eq!(choose(&[(true, 8), (false, 1), (false, 0)]), Some(1));
        assert_eq!(choose(&[(true, 8), (true, 2)]), Some(0));
    }
}
