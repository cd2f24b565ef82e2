//! The node's own faults, and how it keeps its policy right through them: a database closed by
//! an I/O error, and a clock that is behind the time its publishers have signed.
//!
//! Invariants:
//! - **A catalog the node accepted is in force even if it could not be saved.** When the
//!   database is closed (a full disk, see `reopening_db.rs`), an accepted catalog is applied to
//!   the in-memory policy all the same, so its revocations bite on the next request, and kept in
//!   the policy state's unsaved catalogs (one per publisher, the newest) until it is saved: every
//!   [`HEALTH_INTERVAL`], and before any other catalog is accepted. A trust removal (`trust rm`)
//!   is the same: in force at once, saved once the database reopens. The node never serves under
//!   a policy it could not update. Until then a restart would go back to the saved catalog, and
//!   then forward again as soon as the newer one is fetched from peers or the DHT.
//! - **While the database is closed, it says so loudly:** `status` (`health`), `/metrics`
//!   (`licet_store_closed`, `licet_catalogs_unsaved`, `licet_trust_removals_unsaved`) and a `warn!` line when it closes; an
//!   `info!` line when it reopens. Writes that cannot wait (trust changes, `add`, chunk
//!   commits) fail with an error that says the database is closed and why, and work again once
//!   it reopens, without a restart.
//! - **Windows are judged at the time floor when the clock is behind it**
//!   ([`licet_proto::policy::judged_now`]): the floor is the newest `issued_at` of an accepted
//!   catalog, and it is persisted with those catalogs. A clock behind the floor by more than
//!   the allowed skew is reported in `status`, `/metrics` and the log.
//! - **A clock far from what peers say is reported, and nothing more**: the median of a few
//!   peers' clocks (`peers::clocks`) beyond the allowed skew either way is in `status`
//!   (`health.clock_behind_peers_seconds`), `/metrics` (`licet_clock_peer_offset_seconds`) and
//!   the log. A peer is anyone, so what peers say never moves the time windows are judged at.

use std::{sync::atomic::Ordering, time::Duration};

use licet_proto::policy::CLOCK_SKEW_SECONDS;
use tracing::warn;

use crate::{
    contract::NodeHealth,
    node::{Node, blocking},
    peers::CLOCK_ASK_INTERVAL,
};

/// What the log says when the clock is `seconds` behind what peers say (ahead if negative).
fn peers_clock_warning(seconds: i64) -> String {
    if seconds > 0 {
        format!(
            "the clock is {seconds} s behind what most peers asked say (more than the \
             {CLOCK_SKEW_SECONDS} s allowed): releases whose licence ended may stay open here \
             until a publisher's catalog moves the time floor; set the clock right"
        )
    } else {
        format!(
            "the clock is {} s ahead of what most peers asked say (more than the \
             {CLOCK_SKEW_SECONDS} s allowed): releases end early here; set the clock right",
            -seconds
        )
    }
}

/// How often the node tries to reopen a closed database and to save the catalogs it could not
/// save, and looks at its clock.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

impl Node {
    /// Every [`HEALTH_INTERVAL`]: reopens a closed database, saves what waited, and logs a clock
    /// that fell behind the time floor.
    pub(crate) fn start_health_watch(&self) {
        let node = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(HEALTH_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut clock_was_behind = false;
            let mut clock_was_off_peers = false;
            while !node.inner.stopping.load(Ordering::Relaxed) {
                ticks.tick().await;
                let store = node.inner.store.clone();
                let open = blocking(move || store.recover()).await.unwrap_or(false);
                if open && node.inner.policy.has_unsaved() {
                    let updating = node.inner.policy.updating().await;
                    node.catalogs().save_unsaved(&updating).await;
                }
                let behind = node.inner.policy.clock_behind();
                if let Some(seconds) = behind
                    && !clock_was_behind
                {
                    warn!(
                        "the clock is {seconds} s behind the newest accepted catalog's issue \
                         time (more than the {CLOCK_SKEW_SECONDS} s allowed): licence windows \
                         are judged by that time instead; set the clock right"
                    );
                }
                clock_was_behind = behind.is_some();
                let off = node.inner.peers.peers_time().and_then(|t| t.beyond_skew());
                if let Some(seconds) = off
                    && !clock_was_off_peers
                {
                    warn!("{}", peers_clock_warning(seconds));
                }
                clock_was_off_peers = off.is_some();
            }
        });
    }

    /// Every [`CLOCK_ASK_INTERVAL`]: asks a few peers for their clocks.
    pub(crate) fn start_clock_asking(&self) {
        let node = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(CLOCK_ASK_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !node.inner.stopping.load(Ordering::Relaxed) {
                ticks.tick().await;
                if !node.inner.peers.ask_clocks().await {
                    return;
                }
            }
        });
    }

    /// The node's faults, for `status`; also sets the health gauges of `/metrics`.
    pub(crate) fn health(&self) -> NodeHealth {
        let database_problem = self.inner.store.health().problem();
        let unsaved_catalogs = self.inner.policy.unsaved_publishers();
        let unsaved_trust_removals = self.inner.policy.unsaved_distrusts();
        let floor = self.inner.policy.time_floor();
        let behind = self.inner.policy.clock_behind();
        let peers_time = self.inner.peers.peers_time();
        let gauges = &self.inner.metrics.health;
        gauges
            .clock_peer_offset
            .set(peers_time.map_or(0, |t| t.offset_seconds));
        gauges
            .clock_peers_sampled
            .set(peers_time.map_or(0, |t| i64::try_from(t.peers).unwrap_or(i64::MAX)));
        gauges
            .store_closed
            .set(i64::from(database_problem.is_some()));
        gauges
            .store_reopens
            .set(i64::try_from(self.inner.store.reopened()).unwrap_or(i64::MAX));
        gauges
            .catalogs_unsaved
            .set(i64::try_from(unsaved_catalogs.len()).unwrap_or(i64::MAX));
        gauges
            .trust_removals_unsaved
            .set(i64::try_from(unsaved_trust_removals.len()).unwrap_or(i64::MAX));
        gauges.clock_behind_floor.set(behind.unwrap_or(0));
        gauges.time_floor.set(floor.map_or(0, |f| f.0));
        NodeHealth {
            database_problem,
            unsaved_catalogs,
            unsaved_trust_removals,
            time_floor: floor.map(|f| f.to_string()),
            clock_behind_seconds: behind,
            clock_behind_peers_seconds: peers_time.and_then(|t| t.beyond_skew()),
        }
    }
}
