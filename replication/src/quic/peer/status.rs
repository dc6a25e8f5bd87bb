//! What operators see of each peer (`PEER LIST`, `INFO replication`): its
//! state, lags and byte rates, and the tick loop that samples the engine's
//! vector (for `time_lag_ms`) and the peers' byte counters (for the rates).

use super::{Link, Peer, PeerEntry, Shared, LAG_MARKS_MAX, LAG_MARK_INTERVAL_MS, RATE_INTERVAL_MS};
use crate::quic::PeerStatus;
use crate::session::PeerState;
use chorus_engine::id::{SiteId, VersionVector};
use chorus_engine::Engine;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

impl Shared {
    pub(crate) fn status(&self, only: Option<SiteId>) -> Vec<PeerStatus> {
        let engine = self.engine.lock();
        self.status_with(&engine, only)
    }

    /// [`Shared::status`] for a caller that holds the engine lock already.
    pub(crate) fn status_with(&self, engine: &Engine, only: Option<SiteId>) -> Vec<PeerStatus> {
        let peers: Vec<Arc<Peer>> = {
            let map = self.peers.lock();
            match only {
                Some(site) => map.get(&site).cloned().into_iter().collect(),
                None => map.values().cloned().collect(),
            }
        };
        let marks = self.lag_marks.lock();
        let now_ms = self.clock.now_ms();
        peers
            .iter()
            .map(|p| {
                let e = p.entry.lock();
                let stats = e.session.stats().clone();
                let acked = e.session.peer_acked_vv().clone();
                PeerStatus {
                    site_id: p.site,
                    addr: e.addr,
                    remote_addr: match e.link {
                        Link::Connected { remote, .. } => Some(remote),
                        _ => None,
                    },
                    dialed_by_us: match e.link {
                        Link::Connected { dialed_by_us, .. } => Some(dialed_by_us),
                        _ => None,
                    },
                    state: state_name(&e),
                    paused: e.session.is_paused(),
                    ops_lag: e.session.ops_lag(engine),
                    time_lag_ms: time_lag_ms(engine.vv(), &acked, &marks, now_ms),
                    bytes_in: stats.bytes_in,
                    bytes_out: stats.bytes_out,
                    bytes_in_per_s: e.rate_per_s.0,
                    bytes_out_per_s: e.rate_per_s.1,
                    last_ack_ms: stats.last_ack_ms,
                    ops_sent: stats.ops_sent,
                    ops_received: stats.ops_received,
                    ops_applied: stats.ops_applied,
                    connects: stats.connects,
                    refused: e.refused,
                    refusals: e.refusals,
                    last_error: e.last_error.clone(),
                    last_refusal: e.last_refusal.clone(),
                    acked_vv: acked,
                    stats,
                    pubsub: p.pubsub.stats(),
                }
            })
            .collect()
    }
}

fn state_name(e: &PeerEntry) -> &'static str {
    match e.session.state() {
        PeerState::Handshake => "handshake",
        PeerState::FullSync => "full-sync",
        PeerState::Streaming => "streaming",
        PeerState::Paused => "paused",
        PeerState::Connecting | PeerState::Down => match e.link {
            Link::Dialing => "connecting",
            // Never connected and no failure yet: still coming up.
            _ if e.gen == 0 && e.last_error.is_none() => "connecting",
            _ => "down",
        },
    }
}

/// How long the oldest op the peer has not durably acknowledged has been
/// here: the time since the engine last held only what the peer holds.
fn time_lag_ms(
    ours: &VersionVector,
    acked: &VersionVector,
    marks: &VecDeque<(VersionVector, u64)>,
    now_ms: u64,
) -> u64 {
    if acked.dominates(ours) {
        return 0;
    }
    match marks.iter().rev().find(|(vv, _)| acked.dominates(vv)) {
        Some(&(_, seen_ms)) => now_ms.saturating_sub(seen_ms),
        // Behind every mark: at least as old as the oldest.
        None => marks
            .front()
            .map_or(0, |&(_, at_ms)| now_ms.saturating_sub(at_ms)),
    }
}

// ---- periodic bookkeeping ----------------------------------------------------------

/// Samples the engine's vector for `time_lag_ms` and the peers' byte rates.
pub(crate) async fn tick_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(LAG_MARK_INTERVAL_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if shared.is_shut_down() {
            break;
        }
        let vv = shared.engine.lock().vv().clone();
        let now_ms = shared.clock.now_ms();
        {
            let mut marks = shared.lag_marks.lock();
            match marks.back_mut() {
                Some((last, seen_ms)) if *last == vv => *seen_ms = now_ms,
                _ => {
                    if marks.len() >= LAG_MARKS_MAX {
                        marks.pop_front();
                    }
                    marks.push_back((vv, now_ms));
                }
            }
        }
        let peers: Vec<Arc<Peer>> = shared.peers.lock().values().cloned().collect();
        for p in peers {
            let mut e = p.entry.lock();
            let elapsed = now_ms.saturating_sub(e.rate_at_ms);
            if elapsed < RATE_INTERVAL_MS {
                continue;
            }
            let stats = e.session.stats();
            let (bytes_in, bytes_out) = (stats.bytes_in, stats.bytes_out);
            let per_s =
                |now: u64, before: u64| now.saturating_sub(before).saturating_mul(1000) / elapsed;
            e.rate_per_s = (
                per_s(bytes_in, e.rate_bytes.0),
                per_s(bytes_out, e.rate_bytes.1),
            );
            e.rate_bytes = (bytes_in, bytes_out);
            e.rate_at_ms = now_ms;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_engine::id::Origin;

    fn vv(entries: &[(u16, u64)]) -> VersionVector {
        let mut v = VersionVector::new();
        for &(s, q) in entries {
            v.set(Origin::new(s, 0), q);
        }
        v
    }

    #[test]
    fn time_lag_is_the_age_of_the_last_state_the_peer_holds() {
        let marks: VecDeque<_> = [
            (vv(&[(1, 5)]), 1_000),
            (vv(&[(1, 9)]), 1_300),
            (vv(&[(1, 12)]), 1_600),
        ]
        .into_iter()
        .collect();
        let ours = vv(&[(1, 12)]);
        assert_eq!(time_lag_ms(&ours, &vv(&[(1, 12)]), &marks, 2_000), 0);
        assert_eq!(time_lag_ms(&ours, &vv(&[(1, 10)]), &marks, 2_000), 700);
        assert_eq!(time_lag_ms(&ours, &vv(&[(1, 5)]), &marks, 2_000), 1_000);
        // Behind every mark: the oldest mark's age, a lower bound.
        assert_eq!(time_lag_ms(&ours, &vv(&[]), &marks, 2_000), 1_000);
        assert_eq!(time_lag_ms(&ours, &vv(&[]), &VecDeque::new(), 2_000), 0);
    }
}
