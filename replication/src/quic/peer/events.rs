//! Acting on a peer session's events under the entry lock: the certificate
//! checked against the site a `Hello` names, failures and refusals noted for
//! operators, and everything else logged.

use super::{PeerEntry, CLOSE_BAD_CERTIFICATE, CLOSE_SESSION};
use crate::quic::tls;
use crate::session::{SessionEvent, SyncDirection};
use chorus_engine::id::SiteId;

/// Acts on the session's events (under the entry lock).
pub(super) fn drain_events(site: SiteId, peer: SiteId, e: &mut PeerEntry) {
    while let Some(event) = e.session.poll_event() {
        match event {
            SessionEvent::Connected { peer_site } => {
                // The session is pinned to the certificate's site, so this
                // holds; checked again because it is the security boundary.
                let check = match &e.cert {
                    Some(cert) => tls::check_peer_site(cert, peer_site).map_err(|x| x.to_string()),
                    None => Err("no peer certificate".to_string()),
                };
                match check {
                    Ok(()) => {
                        tracing::info!(site, peer, "replication connected");
                        e.backoff.reset();
                        e.refused = false;
                        e.last_error = None;
                        e.error_noted = false;
                    }
                    Err(why) => {
                        tracing::warn!(site, peer, %why, "peer certificate does not match its Hello");
                        e.note_failure(why.clone(), true);
                        e.close = Some((CLOSE_BAD_CERTIFICATE, why));
                    }
                }
            }
            SessionEvent::Refused { reason, by_peer } => {
                let why = if by_peer {
                    format!("refused by peer: {reason:?}")
                } else {
                    format!("refused peer: {reason:?}")
                };
                tracing::warn!(site, peer, "{why}");
                e.note_failure(why.clone(), true);
                e.close.get_or_insert((CLOSE_SESSION, why));
            }
            SessionEvent::Closed { error } => {
                let why = error.to_string();
                if matches!(error, crate::session::SessionError::OpIdConflict { .. }) {
                    tracing::error!(site, peer, error = %why, "replication refused: two different ops under one OpId");
                } else {
                    tracing::warn!(site, peer, error = %why, "replication session closed");
                }
                e.note_failure(why.clone(), false);
                e.close.get_or_insert((CLOSE_SESSION, why));
            }
            SessionEvent::FullSyncStarted {
                direction,
                rows_total,
            } => {
                tracing::info!(site, peer, ?direction, rows_total, "full sync started");
            }
            SessionEvent::FullSyncFinished { direction, rows } => {
                // Receiving: `merge_snapshot` checkpointed the merged state
                // before any ack can cover it; nothing left to do here.
                if direction == SyncDirection::Receiving {
                    tracing::info!(site, peer, rows, "full sync received and merged");
                } else {
                    tracing::info!(site, peer, rows, "full sync sent");
                }
            }
            SessionEvent::Lagging { ops_lag } => {
                tracing::warn!(site, peer, ops_lag, "peer is lagging");
            }
            SessionEvent::ClockAhead { ahead_ms, ops_ahead } => tracing::warn!(
                site,
                peer,
                ahead_ms,
                ops_ahead,
                "peer's clock runs ahead of ours by more than max-clock-skew-ms: its ops are applied, our stamps stop at our clock plus the bound; check NTP on both sites"
            ),
            SessionEvent::CaughtUp => tracing::info!(site, peer, "peer caught up"),
            SessionEvent::PeerWentBack { lost_ops, .. } => {
                tracing::warn!(
                    site,
                    peer,
                    lost_ops,
                    "the peer's handshake shows fewer ops than it acknowledged (its disk restored from an older copy, or a handshake that crossed an ack): sending it what it lacks again"
                );
            }
            SessionEvent::DigestMatched { db } => tracing::debug!(site, peer, db, "digest matched"),
            SessionEvent::DigestMismatch { db, buckets } => {
                tracing::error!(
                    site,
                    peer,
                    db,
                    ?buckets,
                    "DIGEST MISMATCH: leaves differ where both sites hold the same ops; repairing"
                );
            }
            SessionEvent::Repaired { db, buckets, rows } => {
                tracing::error!(
                    site,
                    peer,
                    db,
                    ?buckets,
                    rows,
                    "ANTI-ENTROPY REPAIR: rows differed where both sites hold the same ops and were joined with the peer's, keeping every entry (lost or damaged state at one site)"
                );
            }
            SessionEvent::RepairTooLarge { db, buckets } => {
                tracing::error!(
                    site,
                    peer,
                    db,
                    ?buckets,
                    "anti-entropy cannot repair these buckets: too large for one repair message (PEER RESYNC merges a full snapshot)"
                );
            }
        }
    }
}
