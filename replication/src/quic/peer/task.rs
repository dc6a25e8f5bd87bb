//! The long-lived task of one peer: keeps its session across connections,
//! dials with backoff when due, and runs whatever connection comes first
//! (dialed or accepted) until it ends or is replaced.

use super::connect::dial;
use super::connection::{run_connection, ConnectionEnd};
use super::{ConnEvent, Link, NewConn, Peer, Shared};
use crate::quic::clock::jitter;
use std::sync::Arc;
use tokio::sync::mpsc;

pub(super) async fn run_peer(
    shared: Arc<Shared>,
    peer: Arc<Peer>,
    mut conn_rx: mpsc::Receiver<ConnEvent>,
) {
    let mut changes = shared.changes.subscribe();
    let mut dialing = false;
    let mut next: Option<NewConn> = None;
    let salt = (u64::from(shared.site_id) << 16) | u64::from(peer.site);
    loop {
        if let Some((code, why)) = shared.stopping(&peer) {
            if let Some(c) = next.take() {
                c.connection.close(code, why.as_bytes());
            }
            break;
        }
        if let Some(conn) = next.take() {
            let end = run_connection(
                &shared,
                &peer,
                conn,
                &mut conn_rx,
                &mut changes,
                &mut dialing,
            )
            .await;
            match end {
                ConnectionEnd::Replaced(c) => next = Some(c),
                ConnectionEnd::Ended => {
                    let now_ms = shared.clock.now_ms();
                    let mut e = peer.entry.lock();
                    let delay = e.backoff.next_delay_ms(jitter(salt));
                    e.next_dial_ms = now_ms.saturating_add(delay);
                }
            }
            continue;
        }
        // Not connected: dial when due, take whatever connection comes first.
        let now_ms = shared.clock.now_ms();
        let dial_at = {
            let mut e = peer.entry.lock();
            match e.addr {
                Some(addr) if !dialing && now_ms >= e.next_dial_ms => {
                    dialing = true;
                    e.link = Link::Dialing;
                    let endpoint = shared.endpoint.clone();
                    let tx = peer.conn_tx.clone();
                    let (site, timeout_ms) = (peer.site, shared.handshake_timeout_ms);
                    tokio::spawn(async move {
                        let event = dial(endpoint, site, addr, timeout_ms).await;
                        let _ = tx.send(event).await;
                    });
                    None
                }
                Some(_) if !dialing => Some(e.next_dial_ms),
                _ => None,
            }
        };
        let sleep = async {
            match dial_at {
                Some(at) => tokio::time::sleep_until(shared.clock.instant_at(at)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = conn_rx.recv() => match event {
                Some(ConnEvent::Conn(c)) => {
                    if c.dialed_by_us {
                        dialing = false;
                    }
                    next = Some(c);
                }
                Some(ConnEvent::DialFailed { error, refused }) => {
                    dialing = false;
                    let now_ms = shared.clock.now_ms();
                    let mut e = peer.entry.lock();
                    if refused {
                        tracing::warn!(site = shared.site_id, peer = peer.site, %error, "dial refused");
                    } else {
                        tracing::debug!(site = shared.site_id, peer = peer.site, %error, "dial failed");
                    }
                    e.error_noted = false;
                    e.note_failure(error, refused);
                    e.link = Link::Idle;
                    let delay = e.backoff.next_delay_ms(jitter(salt));
                    e.next_dial_ms = now_ms.saturating_add(delay);
                }
                None => break,
            },
            () = sleep => {}
            () = peer.wake.notified() => {}
        }
    }
    let mut e = peer.entry.lock();
    e.link = Link::Idle;
    e.gen += 1;
}
