//! `write-mode sync`: a write's reply (or EXEC's) is released only once at
//! least one peer durably acknowledged the op it became, so the write
//! survives the total loss of this site (RPO 0).
//!
//! The connection calls [`settle`] with the reply and the op
//! ([`WriteMark`]) after the command ran, with no lock held: the wait sleeps
//! on the replication driver's ack notifications
//! ([`Replication::wait_acked`](chorus_replication::quic::Replication::wait_acked)),
//! so other clients and the engine go on meanwhile. After
//! `sync-write-timeout-ms` without an ack, or at once when this site has no
//! peer, the client gets a `NOTREPLICATED` error instead of the reply: the
//! write *is* applied here (and durable per `appendfsync`) and will still
//! replicate when a peer comes back; it is just not yet safe from the loss
//! of this site.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chorus_engine::Reply;

use crate::config::WriteMode;
use crate::server::ServerState;
use crate::store::WriteMark;

/// Counters for `INFO replication`.
#[derive(Debug, Default)]
pub struct SyncWriteStats {
    /// Writes whose reply waited for, and got, a peer's durable ack.
    pub acked: AtomicU64,
    /// Writes answered with `NOTREPLICATED`.
    pub not_replicated: AtomicU64,
}

impl SyncWriteStats {
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }
    pub fn not_replicated(&self) -> u64 {
        self.not_replicated.load(Ordering::Relaxed)
    }
}

/// The error of a write that no peer acknowledged in time.
pub fn not_acknowledged(timeout_ms: u64) -> Reply {
    Reply::Error(format!(
        "NOTREPLICATED write applied locally but not acknowledged by any peer within {timeout_ms} ms"
    ))
}

/// The error of a write on a site without peers in `write-mode sync`.
pub fn no_peers() -> Reply {
    Reply::err(
        "NOTREPLICATED write applied locally but not acknowledged by any peer: this site has no peer (write-mode sync)",
    )
}

/// Releases `reply` to the client as `write-mode` says: at once in `async`
/// mode or when the command failed; in `sync` mode once a peer durably
/// acknowledged `mark`, or `NOTREPLICATED` after the timeout.
pub async fn settle(state: &ServerState, mark: WriteMark, reply: Reply) -> Reply {
    let settings = state.settings();
    if settings.write_mode != WriteMode::Sync || matches!(reply, Reply::Error(_)) {
        return reply;
    }
    let stats = &state.sync_writes;
    let Some(r) = state.store.replication().filter(|r| r.peer_count() > 0) else {
        stats.not_replicated.fetch_add(1, Ordering::Relaxed);
        let error = no_peers();
        if let Reply::Error(text) = &error {
            state.stats.count_error(text);
        }
        return error;
    };
    let timeout_ms = settings.sync_write_timeout_ms;
    let got = r
        .wait_acked(mark.origin, mark.seq, 1, Duration::from_millis(timeout_ms))
        .await;
    if got >= 1 {
        stats.acked.fetch_add(1, Ordering::Relaxed);
        return reply;
    }
    stats.not_replicated.fetch_add(1, Ordering::Relaxed);
    let error = not_acknowledged(timeout_ms);
    if let Reply::Error(text) = &error {
        state.stats.count_error(text);
    }
    error
}
