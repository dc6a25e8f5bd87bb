//! The read loop of one connection: stream chunks fed to the session and
//! applied in slices, the engine lock handed over fairly between them.

use super::events::drain_events;
use super::{
    note_error, session_connected, Peer, Shared, APPLY_SLICE_OPS_MAX, READ_CHUNK_BYTES_MAX,
};
use chorus_engine::Fsync;
use quinn::RecvStream;
use std::sync::Arc;

/// Reads the stream and feeds the session, applying each chunk in slices of
/// `APPLY_SLICE_OPS_MAX`; after each chunk wakes the writer, and every other
/// peer when the engine changed (their peers may need it).
pub(super) async fn read_loop(
    shared: Arc<Shared>,
    peer: Arc<Peer>,
    mut recv: RecvStream,
    gen: u64,
) {
    loop {
        let chunk = match recv.read_chunk(READ_CHUNK_BYTES_MAX, true).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => {
                note_error(&peer, gen, "peer finished the stream".into());
                break;
            }
            Err(e) => {
                note_error(&peer, gen, format!("read: {e}"));
                break;
            }
        };
        let mut pushed = false;
        let mut applied_in_chunk = false;
        loop {
            let (more, connected) = {
                let mut engine = shared.engine.lock();
                let mut e = peer.entry.lock();
                if e.gen != gen {
                    return;
                }
                let now_ms = shared.clock.now_ms();
                if !pushed {
                    e.session.push_bytes(now_ms, &chunk.bytes);
                    pushed = true;
                }
                let applied_before = engine.vv().total();
                let acks_before = e.session.stats().acks_received;
                let more = e
                    .session
                    .handle_received(now_ms, &mut engine, APPLY_SLICE_OPS_MAX);
                if e.session.stats().acks_received != acks_before {
                    shared.acks.send_modify(|v| *v = v.wrapping_add(1));
                }
                let applied = engine.vv().total() != applied_before;
                applied_in_chunk |= applied;
                if !more && applied_in_chunk && engine.config().fsync == Fsync::Always {
                    // Durable before anything else is sent: the ack can go at
                    // once. One fsync per read chunk, not per slice. The mode
                    // is the engine's: `CONFIG SET appendfsync` reaches it.
                    if let Err(err) = engine.sync() {
                        tracing::error!(site = shared.site_id, error = %err, "engine sync failed");
                    }
                }
                drain_events(shared.site_id, peer.site, &mut e);
                let connected = session_connected(e.session.state());
                drop(e);
                // Hand the engine to a waiting client rather than taking it
                // straight back for the next slice.
                parking_lot::MutexGuard::unlock_fair(engine);
                (more, connected)
            };
            if !connected {
                peer.wake.notify_one();
                return;
            }
            if !more {
                break;
            }
            // The writers are woken once per chunk, as before slicing: waking
            // them per slice only made them contend for the engine lock.
            tokio::task::yield_now().await;
        }
        if applied_in_chunk {
            shared.notify_engine_changed();
        }
        peer.wake.notify_one();
    }
    peer.wake.notify_one();
}
