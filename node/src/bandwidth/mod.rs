//! The bandwidth part: the upload and download rate limits in force, global and per peer, and
//! the pacing of chunks under them. [`Bandwidth`] is the handle; it owns the configured limits
//! ([`LimitsConfig`]: base rates, a schedule, `lan_exempt`), the changes made while running,
//! and the `governor` limiters (GCRA; bytes are the cells) built from what is in force.
//!
//! Where pacing happens:
//! - uploads are paced on the serving side, after the trust policy allowed a chunk and before it
//!   is read and sent ([`Bandwidth::pace_upload`]; catalog parts after they are prepared). The
//!   time spent there counts as the stream preparing an answer, not as waiting on the peer;
//! - downloads are paced on the requesting side, before a chunk request is sent
//!   ([`Bandwidth::pace_download`]), for the chunk's whole size: a requester's deadline on a
//!   peer's answer (`transfer::REQUEST_TIMEOUT`) starts when the request is sent, so it never
//!   counts time this node spent throttling itself, and the peer's answer, once asked for,
//!   comes at the peer's speed. Pacing on reading instead would leave answers waiting in the
//!   peer's stream and run into that deadline.
//!
//! A throttled seeder is never taken for a slowloris: a requester gives a request
//! `REQUEST_TIMEOUT` from sending it to its answer, and answers on a stream come in order, so a
//! queue of chunk requests longer than the limit can send in that time would time out. Before
//! paying for a chunk, [`Bandwidth::pace_upload`] checks that the request's age plus the time
//! its bytes need at the limit stays within [`UPLOAD_ANSWER_BUDGET`] (half the requester's
//! deadline, the other half for the network); if not, the chunk is not read and the answer is
//! `Busy` with a retry time, which requesters take without penalty (they ask later or
//! elsewhere). Requesters' deadlines and bans stay as strict as they are.
//!
//! Invariants:
//! - a chunk is paid in pieces no larger than the smallest burst in play (a quarter second of
//!   the rate, at least 1 KiB), so a chunk larger than a burst is paced, not refused, and no
//!   window of 30 s sees more than the rate allows plus one burst;
//! - the per-peer limiters keep one state per peer that was paced recently: states that say
//!   nothing any more are dropped every [`SCHEDULE_CHECK`] (`retain_recent`), and peers served at
//!   once are bounded by the node's stream places, so the state stays bounded;
//! - what is in force is always `runtime changes` over `the schedule rule in force, if any` over
//!   `the base limits`; changes made while running last until `reset` or a restart;
//! - a peer exempt as on the LAN (`lan.rs`) is not paced; the set of such peers is refreshed
//!   from the connections every [`SCHEDULE_CHECK`] and holds at most [`MAX_LAN_PEERS`].

pub mod lan;
pub mod rate;
pub mod schedule;

use std::{
    collections::HashSet,
    num::NonZeroU32,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    state::keyed::DefaultKeyedStateStore,
};
use libp2p::PeerId;

pub use self::{
    rate::{Rate, RateError},
    schedule::{Day, LimitChange, LimitSet, LimitsConfig, Minute, ScheduleRule},
};
use crate::metrics::Metrics;

/// The longest a chunk request may wait on this node, from its arrival to its last byte paid
/// for, before it is answered `Busy` instead: half of the requester's `REQUEST_TIMEOUT` (30 s).
pub const UPLOAD_ANSWER_BUDGET: Duration = Duration::from_secs(15);
/// How often the schedule is looked at, the LAN peers refreshed and idle per-peer states dropped.
pub const SCHEDULE_CHECK: Duration = Duration::from_secs(5);
/// Most peers held as exempt on the LAN.
pub const MAX_LAN_PEERS: usize = 1024;
/// The shortest and longest retry time given with a `Busy` answer.
const BUSY_RETRY: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(5));

/// The direction of a transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// This node sends.
    Upload,
    /// This node receives.
    Download,
}

impl Direction {
    /// `upload` or `download`, as metrics label it.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Upload => "upload",
            Direction::Download => "download",
        }
    }
}

/// A chunk the upload limits cannot send in time: answer `Busy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the upload limit cannot send it within its requester's deadline; retry in {retry_after:?}"
)]
pub struct TooLate {
    /// When to ask again.
    pub retry_after: Duration,
}

type Direct = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    DefaultClock,
    governor::middleware::NoOpMiddleware<<DefaultClock as Clock>::Instant>,
>;
type Keyed = RateLimiter<
    PeerId,
    DefaultKeyedStateStore<PeerId>,
    DefaultClock,
    governor::middleware::NoOpMiddleware<<DefaultClock as Clock>::Instant>,
>;

/// A limiter and the rate and burst it was built with.
struct Limiter<L> {
    limiter: L,
    rate: NonZeroU32,
    burst: NonZeroU32,
}

/// The burst of `rate`: a quarter second of it, at least [`rate::MIN_RATE`].
fn burst_of(rate: NonZeroU32) -> NonZeroU32 {
    NonZeroU32::new((rate.get() / 4).max(rate::MIN_RATE)).unwrap_or(rate)
}

fn quota(rate: NonZeroU32) -> Quota {
    Quota::per_second(rate).allow_burst(burst_of(rate))
}

/// The limiters of one direction.
struct DirectionLimiters {
    global: Option<Limiter<Direct>>,
    peer: Option<Limiter<Keyed>>,
}

impl DirectionLimiters {
    fn new(global: Rate, peer: Rate, clock: &DefaultClock) -> DirectionLimiters {
        DirectionLimiters {
            global: global.limit().map(|rate| Limiter {
                limiter: RateLimiter::direct_with_clock(quota(rate), clock.clone()),
                rate,
                burst: burst_of(rate),
            }),
            peer: peer.limit().map(|rate| Limiter {
                limiter: RateLimiter::dashmap_with_clock(quota(rate), clock.clone()),
                rate,
                burst: burst_of(rate),
            }),
        }
    }

    /// The slowest rate and the smallest burst in play, if any limit is.
    fn slowest(&self) -> Option<(NonZeroU32, NonZeroU32)> {
        let rates = self.global.iter().map(|l| (l.rate, l.burst));
        let peer = self.peer.iter().map(|l| (l.rate, l.burst));
        rates
            .chain(peer)
            .reduce(|(r1, b1), (r2, b2)| (r1.min(r2), b1.min(b2)))
    }

    /// Takes `cells` for `peer` from each limiter now, or says how long until it could (nothing
    /// is taken from a limiter that says wait; the per-peer one is asked first).
    fn try_take(&self, peer: &PeerId, cells: NonZeroU32, clock: &DefaultClock) -> Option<Duration> {
        let now = clock.now();
        if let Some(l) = &self.peer {
            match l.limiter.check_key_n(peer, cells) {
                Ok(Ok(())) => {}
                Ok(Err(not_until)) => return Some(not_until.wait_time_from(now)),
                // Cannot happen: pieces are never larger than a burst.
                Err(_) => return None,
            }
        }
        if let Some(l) = &self.global {
            match l.limiter.check_n(cells) {
                Ok(Ok(())) => {}
                Ok(Err(not_until)) => return Some(not_until.wait_time_from(now)),
                Err(_) => return None,
            }
        }
        None
    }
}

/// The limiters built from the limits in force.
struct Limiters {
    upload: DirectionLimiters,
    download: DirectionLimiters,
}

impl Limiters {
    fn of(&self, direction: Direction) -> &DirectionLimiters {
        match direction {
            Direction::Upload => &self.upload,
            Direction::Download => &self.download,
        }
    }
}

/// What the part holds besides its limiters.
struct Settings {
    /// The configured limits (replaced whole by [`Bandwidth::reconfigure`]).
    config: LimitsConfig,
    /// Changes made while running (until `reset` or a restart).
    runtime: LimitChange,
    /// The schedule rule in force, by index.
    active_rule: Option<usize>,
    /// The limits in force.
    in_force: LimitSet,
    /// The limiters of `in_force`.
    limiters: Arc<Limiters>,
}

struct Inner {
    settings: Mutex<Settings>,
    lan_peers: Mutex<HashSet<PeerId>>,
    clock: DefaultClock,
    /// Where the limits and waits are counted (`None`: nowhere, for a part that limits nothing).
    metrics: Option<Arc<Metrics>>,
}

/// The handle to the bandwidth part. Cheap to clone; every clone is the same part.
#[derive(Clone)]
pub struct Bandwidth(Arc<Inner>);

/// The limits as `status` and the API show them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitsReport {
    /// In force now.
    pub in_force: LimitSet,
    /// The configured base limits (config.toml, environment, flags).
    pub configured: LimitSet,
    /// The changes made while running.
    pub runtime: LimitChange,
    /// The schedule rule in force, as `mon,tue 08:00-18:00`.
    pub active_rule: Option<String>,
    /// Every schedule rule, the same way.
    pub schedule: Vec<String>,
    /// Whether LAN peers are exempt.
    pub lan_exempt: bool,
}

impl Bandwidth {
    /// The part, with `config`'s limits in force as of `day` and `minute` (local time).
    pub fn new(config: LimitsConfig, metrics: Arc<Metrics>, day: Day, minute: Minute) -> Bandwidth {
        Bandwidth::with_metrics(config, Some(metrics), day, minute)
    }

    fn with_metrics(
        config: LimitsConfig,
        metrics: Option<Arc<Metrics>>,
        day: Day,
        minute: Minute,
    ) -> Bandwidth {
        let clock = DefaultClock::default();
        let (in_force, active_rule) = config.at(day, minute);
        let bandwidth = Bandwidth(Arc::new(Inner {
            settings: Mutex::new(Settings {
                config,
                runtime: LimitChange::default(),
                active_rule,
                in_force,
                limiters: Arc::new(Limiters {
                    upload: DirectionLimiters::new(in_force.upload, in_force.peer_upload, &clock),
                    download: DirectionLimiters::new(
                        in_force.download,
                        in_force.peer_download,
                        &clock,
                    ),
                }),
            }),
            lan_peers: Mutex::new(HashSet::new()),
            clock,
            metrics,
        }));
        bandwidth.publish(&in_force);
        bandwidth
    }

    /// No limits at all, counted nowhere (fetch contexts built without the node's part).
    pub fn unlimited() -> Bandwidth {
        Bandwidth::with_metrics(LimitsConfig::default(), None, Day::Mon, Minute::at(0, 0))
    }

    fn settings(&self) -> MutexGuard<'_, Settings> {
        self.0.settings.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current local day and minute (UTC if the local time zone cannot be read).
    pub fn local_now() -> (Day, Minute) {
        let now = jiff::Zoned::now();
        (
            Day::of(now.weekday()),
            Minute::at(
                u8::try_from(now.hour()).unwrap_or(0),
                u8::try_from(now.minute()).unwrap_or(0),
            ),
        )
    }

    /// Puts the limits for `day` and `minute` in force (with the runtime changes over them);
    /// the limiters are rebuilt only if a rate changed.
    pub fn refresh(&self, day: Day, minute: Minute) {
        let mut settings = self.settings();
        let (scheduled, active_rule) = settings.config.at(day, minute);
        settings.active_rule = active_rule;
        let in_force = settings.runtime.apply(scheduled);
        self.put_in_force(&mut settings, in_force);
    }

    fn put_in_force(&self, settings: &mut Settings, in_force: LimitSet) {
        if in_force == settings.in_force {
            return;
        }
        let clock = &self.0.clock;
        settings.limiters = Arc::new(Limiters {
            upload: DirectionLimiters::new(in_force.upload, in_force.peer_upload, clock),
            download: DirectionLimiters::new(in_force.download, in_force.peer_download, clock),
        });
        settings.in_force = in_force;
        self.publish(&in_force);
    }

    /// Sets the limits' gauges.
    fn publish(&self, limits: &LimitSet) {
        let Some(metrics) = &self.0.metrics else {
            return;
        };
        for (direction, scope, rate) in [
            ("upload", "global", limits.upload),
            ("download", "global", limits.download),
            ("upload", "peer", limits.peer_upload),
            ("download", "peer", limits.peer_download),
        ] {
            metrics
                .rate_limit(direction, scope)
                .set(i64::try_from(rate.bytes_per_second()).unwrap_or(i64::MAX));
        }
    }

    /// Changes some limits while running (they last until [`Bandwidth::reset`] or a restart).
    pub fn change(&self, change: LimitChange) {
        let (day, minute) = Bandwidth::local_now();
        {
            let mut settings = self.settings();
            settings.runtime = settings.runtime.then(&change);
        }
        self.refresh(day, minute);
    }

    /// Replaces the configured limits (a reload of `config.toml`); the changes made while
    /// running stay over them.
    pub fn reconfigure(&self, config: LimitsConfig) {
        let (day, minute) = Bandwidth::local_now();
        self.settings().config = config;
        self.refresh(day, minute);
    }

    /// Drops every change made while running: the configured limits are in force again.
    pub fn reset(&self) {
        let (day, minute) = Bandwidth::local_now();
        self.settings().runtime = LimitChange::default();
        self.refresh(day, minute);
    }

    /// The limits, for `status` and the API.
    pub fn report(&self) -> LimitsReport {
        let settings = self.settings();
        let config = &settings.config;
        LimitsReport {
            in_force: settings.in_force,
            configured: config.base,
            runtime: settings.runtime,
            active_rule: settings
                .active_rule
                .and_then(|i| config.schedule.get(i))
                .map(ToString::to_string),
            schedule: config.schedule.iter().map(ToString::to_string).collect(),
            lan_exempt: config.lan_exempt,
        }
    }

    /// Whether LAN peers are exempt (then the node calls [`Bandwidth::set_lan_peers`]).
    pub fn lan_exempt(&self) -> bool {
        self.settings().config.lan_exempt
    }

    /// The peers now on the LAN (at most [`MAX_LAN_PEERS`] are kept).
    pub fn set_lan_peers(&self, peers: impl IntoIterator<Item = PeerId>) {
        let peers: HashSet<PeerId> = peers.into_iter().take(MAX_LAN_PEERS).collect();
        *self.0.lan_peers.lock().unwrap_or_else(|p| p.into_inner()) = peers;
    }

    fn exempt(&self, peer: &PeerId) -> bool {
        self.lan_exempt()
            && self
                .0
                .lan_peers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(peer)
    }

    /// Drops per-peer states that say nothing any more (each [`SCHEDULE_CHECK`]).
    pub fn forget_idle_peers(&self) {
        let limiters = self.settings().limiters.clone();
        for direction in [&limiters.upload, &limiters.download] {
            if let Some(l) = &direction.peer {
                l.limiter.retain_recent();
                l.limiter.shrink_to_fit();
            }
        }
    }

    /// Peers with a per-peer state now (bounded; see the module docs).
    pub fn tracked_peers(&self) -> usize {
        let limiters = self.settings().limiters.clone();
        [&limiters.upload, &limiters.download]
            .iter()
            .filter_map(|d| d.peer.as_ref())
            .map(|l| l.limiter.len())
            .sum()
    }

    /// Waits until `bytes` may go to `peer` under the upload limits, for a request that arrived
    /// at `received`; [`TooLate`] (nothing paid) if they could not all be paid for within
    /// [`UPLOAD_ANSWER_BUDGET`] of its arrival.
    pub async fn pace_upload(
        &self,
        peer: PeerId,
        bytes: u32,
        received: Instant,
    ) -> Result<(), TooLate> {
        let deadline = received + UPLOAD_ANSWER_BUDGET;
        let result = self
            .pace(Direction::Upload, peer, bytes, Some(deadline))
            .await;
        if result.is_err()
            && let Some(metrics) = &self.0.metrics
        {
            metrics.rate_limit_busy.inc();
        }
        result
    }

    /// Waits until `bytes` may come from `peer` under the download limits.
    pub async fn pace_download(&self, peer: PeerId, bytes: u32) {
        // Without a deadline, pacing always ends paid.
        let _ = self.pace(Direction::Download, peer, bytes, None).await;
    }

    async fn pace(
        &self,
        direction: Direction,
        peer: PeerId,
        bytes: u32,
        deadline: Option<Instant>,
    ) -> Result<(), TooLate> {
        if bytes == 0 || self.exempt(&peer) {
            return Ok(());
        }
        let mut waited = Duration::ZERO;
        let mut left = bytes;
        let mut first = true;
        while left > 0 {
            // Taken again for each piece: a change of the limits bites within a chunk.
            let limiters = self.settings().limiters.clone();
            let limits = limiters.of(direction);
            let Some((slowest, burst)) = limits.slowest() else {
                break;
            };
            let piece = left.min(burst.get());
            let cells = NonZeroU32::new(piece).unwrap_or(NonZeroU32::MIN);
            // The rest of the chunk after this piece, at the slowest rate in play.
            let rest = Duration::from_secs_f64(f64::from(left - piece) / f64::from(slowest.get()));
            // Before anything is paid: could the whole chunk be paid for by the deadline?
            let too_late = |wait: Duration| match deadline {
                Some(deadline) if first => {
                    let done = Instant::now() + wait + rest;
                    (done > deadline).then(|| TooLate {
                        retry_after: done
                            .saturating_duration_since(deadline)
                            .clamp(BUSY_RETRY.0, BUSY_RETRY.1),
                    })
                }
                _ => None,
            };
            if let Some(late) = too_late(Duration::ZERO) {
                return Err(late);
            }
            match limits.try_take(&peer, cells, &self.0.clock) {
                None => {
                    left -= piece;
                    first = false;
                }
                Some(wait) => {
                    if let Some(late) = too_late(wait) {
                        return Err(late);
                    }
                    let wait = wait.max(Duration::from_millis(1));
                    tokio::time::sleep(wait).await;
                    waited += wait;
                }
            }
        }
        if !waited.is_zero()
            && let Some(metrics) = &self.0.metrics
        {
            metrics
                .rate_limit_wait(direction.name())
                .inc_by(waited.as_secs_f64());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(upload: &str, peer_upload: &str) -> LimitsConfig {
        LimitsConfig {
            base: LimitSet {
                upload: upload.parse().unwrap(),
                peer_upload: peer_upload.parse().unwrap(),
                download: upload.parse().unwrap(),
                ..LimitSet::default()
            },
            ..LimitsConfig::default()
        }
    }

    fn peer() -> PeerId {
        PeerId::random()
    }

    #[tokio::test]
    async fn a_chunk_larger_than_a_burst_is_paced_at_the_rate() {
        let bandwidth = Bandwidth::new(
            config("16KiB/s", "0"),
            Arc::new(Metrics::new()),
            Day::Mon,
            Minute::at(0, 0),
        );
        let started = Instant::now();
        let who = peer();
        for _ in 0..4 {
            bandwidth.pace_download(who, 8 * 1024).await;
        }
        let waited = started.elapsed();
        // 32 KiB at 16 KiB/s, less the first burst (4 KiB).
        assert!(waited >= Duration::from_millis(1_700), "{waited:?}");
    }

    #[tokio::test]
    async fn a_queue_the_limit_cannot_send_in_time_is_answered_busy() {
        let bandwidth = Bandwidth::new(
            config("0", "64KiB/s"),
            Arc::new(Metrics::new()),
            Day::Mon,
            Minute::at(0, 0),
        );
        let who = peer();
        // 1 MiB at 64 KiB/s is 16 s, more than the budget: refused at once, nothing paid.
        let late = bandwidth
            .pace_upload(who, 1024 * 1024, Instant::now())
            .await
            .unwrap_err();
        assert!(late.retry_after >= BUSY_RETRY.0 && late.retry_after <= BUSY_RETRY.1);
        // A request that already waited most of the budget is refused for a chunk that fits.
        let old = Instant::now() - (UPLOAD_ANSWER_BUDGET - Duration::from_secs(1));
        assert!(bandwidth.pace_upload(who, 128 * 1024, old).await.is_err());
        // Nothing was paid: the burst is still there for a small chunk, and another peer has its own.
        assert!(
            bandwidth
                .pace_upload(who, 16 * 1024, Instant::now())
                .await
                .is_ok()
        );
        assert!(
            bandwidth
                .pace_upload(peer(), 16 * 1024, Instant::now())
                .await
                .is_ok()
        );
        assert_eq!(bandwidth.tracked_peers(), 2);
    }

    #[test]
    fn runtime_changes_go_over_the_schedule_until_reset() {
        let mut limits = config("8MiB/s", "0");
        limits.schedule.push(
            ScheduleRule::new(
                &["daily".to_owned()],
                "00:00",
                "24:00",
                LimitChange {
                    download: Some("1MiB/s".parse().unwrap()),
                    ..LimitChange::default()
                },
            )
            .unwrap(),
        );
        let bandwidth =
            Bandwidth::new(limits, Arc::new(Metrics::new()), Day::Mon, Minute::at(9, 0));
        let report = bandwidth.report();
        assert_eq!(report.in_force.download.to_string(), "1 MiB/s");
        assert_eq!(
            report.active_rule.as_deref(),
            Some("mon,tue,wed,thu,fri,sat,sun 00:00-24:00")
        );
        bandwidth.change(LimitChange {
            upload: Some("2MiB/s".parse().unwrap()),
            ..LimitChange::default()
        });
        let report = bandwidth.report();
        assert_eq!(report.in_force.upload.to_string(), "2 MiB/s");
        assert_eq!(report.in_force.download.to_string(), "1 MiB/s");
        assert_eq!(report.configured.upload.to_string(), "8 MiB/s");
        bandwidth.reset();
        assert_eq!(bandwidth.report().in_force.upload.to_string(), "8 MiB/s");
    }

    #[test]
    fn a_new_configuration_takes_over_under_the_runtime_changes() {
        let bandwidth = Bandwidth::new(
            config("8MiB/s", "0"),
            Arc::new(Metrics::new()),
            Day::Mon,
            Minute::at(9, 0),
        );
        bandwidth.change(LimitChange {
            download: Some("3MiB/s".parse().unwrap()),
            ..LimitChange::default()
        });
        let mut reloaded = config("1MiB/s", "64KiB/s");
        reloaded.lan_exempt = true;
        bandwidth.reconfigure(reloaded);
        let report = bandwidth.report();
        assert_eq!(report.configured.upload.to_string(), "1 MiB/s");
        assert_eq!(report.in_force.upload.to_string(), "1 MiB/s");
        assert_eq!(report.in_force.peer_upload.to_string(), "64 KiB/s");
        assert_eq!(
            report.in_force.download.to_string(),
            "3 MiB/s",
            "a change made while running stays over the new configuration"
        );
        assert!(bandwidth.lan_exempt());
    }
}
