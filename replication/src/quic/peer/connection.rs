//! One connection carrying the session: the write loop (timeouts and
//! `poll_transmit` in rounds under the engine lock), the choice between
//! duplicate connections, and the teardown that hands the session back.

use super::connect::refusal_of;
use super::events::drain_events;
use super::pubsub::{pubsub_reader, pubsub_writer};
use super::read::read_loop;
use super::{
    note_error, preferred, session_connected, ConnEvent, Link, NewConn, Peer, Shared,
    CLOSE_DUPLICATE, CLOSE_SESSION, CLOSE_SHUTDOWN, REFUSAL_FLUSH_MS, WRITE_ROUND_BYTES_MAX,
};
use bytes::Bytes;
use quinn::VarInt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

pub(super) enum ConnectionEnd {
    Ended,
    Replaced(NewConn),
}

/// What one round of output produced.
struct Round {
    frames: Vec<Bytes>,
    /// The byte budget ran out: poll again right after writing.
    more: bool,
    connected: bool,
    /// The handshake is done and the peer speaks pub/sub.
    pubsub: bool,
    close: Option<(VarInt, String)>,
    deadline_ms: Option<u64>,
}

/// Runs the session over one connection until it ends or is replaced.
pub(super) async fn run_connection(
    shared: &Arc<Shared>,
    peer: &Arc<Peer>,
    conn: NewConn,
    conn_rx: &mut mpsc::Receiver<ConnEvent>,
    changes: &mut watch::Receiver<u64>,
    dialing: &mut bool,
) -> ConnectionEnd {
    let NewConn {
        connection,
        mut send,
        recv,
        dialed_by_us,
        cert,
    } = conn;
    let remote = connection.remote_address();
    let gen = {
        let now_ms = shared.clock.now_ms();
        let mut e = peer.entry.lock();
        e.gen += 1;
        e.link = Link::Connected {
            remote,
            dialed_by_us,
        };
        e.cert = cert;
        e.close = None;
        e.error_noted = false;
        e.session.handle_connected(now_ms);
        e.gen
    };
    tracing::debug!(site = shared.site_id, peer = peer.site, %remote, dialed_by_us, "connection up");
    let mut reader = tokio::spawn(read_loop(shared.clone(), peer.clone(), recv, gen));
    // The pub/sub streams, once the handshake shows the peer speaks it.
    let mut pubsub_tasks = Vec::new();
    // Every end closes the connection explicitly with a code the peer can
    // read (a dropped handle would close it with a bare 0).
    let ended = || (CLOSE_SESSION, String::from("connection ended"));
    let (end, close) = loop {
        let Some(round) = output_round(shared, peer, gen) else {
            break (ConnectionEnd::Ended, ended());
        };
        if round.pubsub && pubsub_tasks.is_empty() {
            pubsub_tasks.push(tokio::spawn(pubsub_writer(
                peer.clone(),
                connection.clone(),
            )));
            pubsub_tasks.push(tokio::spawn(pubsub_reader(
                shared.clone(),
                peer.clone(),
                connection.clone(),
                gen,
            )));
        }
        if !round.frames.is_empty() {
            let mut frames = round.frames;
            if let Err(e) = send.write_all_chunks(&mut frames).await {
                note_error(peer, gen, format!("write: {e}"));
                break (ConnectionEnd::Ended, ended());
            }
        }
        if let Some(close) = round.close {
            // Let our last frames (a refusal) reach the peer first.
            let _ = send.finish();
            let flush = Duration::from_millis(REFUSAL_FLUSH_MS);
            let _ = tokio::time::timeout(flush, send.stopped()).await;
            break (ConnectionEnd::Ended, close);
        }
        if !round.connected {
            break (ConnectionEnd::Ended, (CLOSE_SESSION, "session down".into()));
        }
        if round.more {
            continue;
        }
        if let Some((code, why)) = shared.stopping(peer) {
            break (ConnectionEnd::Ended, (code, why.into()));
        }
        let sleep = async {
            match round.deadline_ms {
                Some(at) => tokio::time::sleep_until(shared.clock.instant_at(at)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = peer.wake.notified() => {}
            changed = changes.changed() => {
                if changed.is_err() {
                    break (ConnectionEnd::Ended, (CLOSE_SHUTDOWN, "shutdown".into()));
                }
            }
            () = sleep => {}
            _ = &mut reader => break (ConnectionEnd::Ended, ended()),
            _ = connection.closed() => break (ConnectionEnd::Ended, ended()),
            event = conn_rx.recv() => match event {
                Some(ConnEvent::Conn(new)) => {
                    if new.dialed_by_us {
                        *dialing = false;
                    }
                    // Both sides dialed: keep the lower site's outbound one;
                    // two in the same direction: the dialer gave up on the
                    // older one, keep the newer.
                    let keep_new = new.dialed_by_us == dialed_by_us
                        || preferred(shared.site_id, peer.site, new.dialed_by_us);
                    if keep_new {
                        tracing::debug!(site = shared.site_id, peer = peer.site, "replacing duplicate connection");
                        break (
                            ConnectionEnd::Replaced(new),
                            (CLOSE_DUPLICATE, "duplicate connection".into()),
                        );
                    }
                    tracing::debug!(site = shared.site_id, peer = peer.site, "closing duplicate connection");
                    new.connection.close(CLOSE_DUPLICATE, b"duplicate connection");
                }
                Some(ConnEvent::DialFailed { .. }) => *dialing = false,
                None => break (ConnectionEnd::Ended, (CLOSE_SHUTDOWN, "shutdown".into())),
            },
        }
    };
    reader.abort();
    for t in pubsub_tasks {
        t.abort();
    }
    peer.pubsub.set_stream_open(false);
    // Why the connection died, if the peer or the transport closed it (read
    // before our own close, which would say "locally closed").
    let lost = connection.close_reason();
    connection.close(close.0, close.1.as_bytes());
    let now_ms = shared.clock.now_ms();
    let mut e = peer.entry.lock();
    if e.gen == gen {
        if let Some(error) = lost {
            match refusal_of(&error) {
                Some(why) => {
                    tracing::warn!(site = shared.site_id, peer = peer.site, %why, "connection refused");
                    e.note_failure(why, true);
                }
                None => e.note_failure(error.to_string(), false),
            }
        }
        e.session.handle_disconnected(now_ms);
        // Events of the last moments (e.g. a close) are for the operator only.
        drain_events(shared.site_id, peer.site, &mut e);
        e.link = Link::Idle;
        e.cert = None;
        e.close = None;
        // Stale readers and writers of this connection now touch nothing.
        e.gen += 1;
    }
    end
}

/// Timeouts, then `poll_transmit` up to the round's byte budget, under the
/// engine lock; `None` when this connection no longer carries the session.
fn output_round(shared: &Shared, peer: &Peer, gen: u64) -> Option<Round> {
    let mut engine = shared.engine.lock();
    let mut e = peer.entry.lock();
    if e.gen != gen {
        return None;
    }
    let now_ms = shared.clock.now_ms();
    if e.session.poll_timeout().is_some_and(|at| now_ms >= at) {
        e.session.handle_timeout(now_ms, &mut engine);
    }
    let mut frames = Vec::new();
    let mut bytes = 0usize;
    while bytes < WRITE_ROUND_BYTES_MAX {
        match e.session.poll_transmit(now_ms, &mut engine) {
            Some(frame) => {
                bytes += frame.len();
                frames.push(Bytes::from(frame));
            }
            None => break,
        }
    }
    drain_events(shared.site_id, peer.site, &mut e);
    let close = e.close.take();
    Some(Round {
        frames,
        more: bytes >= WRITE_ROUND_BYTES_MAX,
        connected: session_connected(e.session.state()),
        pubsub: close.is_none() && e.session.peer_speaks_pubsub(),
        close,
        deadline_ms: e.session.poll_timeout(),
    })
}
