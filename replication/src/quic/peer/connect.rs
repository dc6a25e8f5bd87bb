//! Accepting and dialing connections: the TLS handshake under a timeout, the
//! site an accepted client certificate names, the bidirectional stream, and
//! refusals told apart from network failures.

use super::{
    ConnEvent, NewConn, Shared, CLOSE_BAD_CERTIFICATE, CLOSE_NO_STREAM, CLOSE_UNKNOWN_SITE,
    HANDSHAKES_PENDING_MAX,
};
use crate::quic::tls;
use chorus_engine::id::SiteId;
use quinn::{Connection, ConnectionError, Endpoint};
use rustls::pki_types::CertificateDer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// A refusal (as opposed to a network failure) in a connection error.
pub(super) fn refusal_of(e: &ConnectionError) -> Option<String> {
    let crypto = |code: u64| (0x100..0x200).contains(&code);
    match e {
        ConnectionError::TransportError(t) if crypto(t.code.into()) => {
            Some(format!("TLS handshake failed: {t}"))
        }
        ConnectionError::ConnectionClosed(c) if crypto(c.error_code.into()) => {
            Some(format!("TLS handshake refused by peer: {c}"))
        }
        ConnectionError::ApplicationClosed(a)
            if a.error_code == CLOSE_UNKNOWN_SITE || a.error_code == CLOSE_BAD_CERTIFICATE =>
        {
            Some(format!(
                "refused by peer: {}",
                String::from_utf8_lossy(&a.reason)
            ))
        }
        _ => None,
    }
}

fn peer_cert(connection: &Connection) -> Option<CertificateDer<'static>> {
    let identity = connection.peer_identity()?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    chain.first().cloned()
}

// ---- accepting -----------------------------------------------------------------

pub(crate) async fn accept_loop(shared: Arc<Shared>) {
    let pending = Arc::new(Semaphore::new(HANDSHAKES_PENDING_MAX));
    while let Some(incoming) = shared.endpoint.accept().await {
        if shared.is_shut_down() {
            incoming.refuse();
            break;
        }
        let Ok(permit) = pending.clone().try_acquire_owned() else {
            shared.note_refusal(format!(
                "refused {}: too many handshakes pending",
                incoming.remote_address()
            ));
            incoming.refuse();
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            accept_one(&shared, incoming).await;
            drop(permit);
        });
    }
}

async fn accept_one(shared: &Shared, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let timeout = Duration::from_millis(shared.handshake_timeout_ms);
    let connection = match tokio::time::timeout(timeout, incoming).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            match refusal_of(&e) {
                Some(why) => shared.note_refusal(format!("refused {remote}: {why}")),
                None => tracing::debug!(%remote, error = %e, "incoming connection failed"),
            }
            return;
        }
        Err(_) => {
            tracing::debug!(%remote, "incoming handshake timed out");
            return;
        }
    };
    // TLS verified the chain to the cluster CA; which site is this?
    let cert = peer_cert(&connection);
    let site = match cert.as_ref().map(tls::site_of_cert) {
        Some(Ok(site)) => site,
        Some(Err(e)) => {
            shared.note_refusal(format!("refused {remote}: {e}"));
            connection.close(CLOSE_BAD_CERTIFICATE, e.to_string().as_bytes());
            return;
        }
        None => {
            shared.note_refusal(format!("refused {remote}: no client certificate"));
            connection.close(CLOSE_BAD_CERTIFICATE, b"no client certificate");
            return;
        }
    };
    let Some(peer) = shared.peer(site) else {
        shared.note_refusal(format!("refused {remote}: site {site} is not a peer"));
        connection.close(
            CLOSE_UNKNOWN_SITE,
            format!("site {site} is not a peer of site {}", shared.site_id).as_bytes(),
        );
        return;
    };
    let (send, recv) = match tokio::time::timeout(timeout, connection.accept_bi()).await {
        Ok(Ok(streams)) => streams,
        Ok(Err(e)) => {
            tracing::debug!(%remote, site, error = %e, "no stream on incoming connection");
            return;
        }
        Err(_) => {
            connection.close(CLOSE_NO_STREAM, b"no stream opened");
            return;
        }
    };
    let conn = NewConn {
        connection,
        send,
        recv,
        dialed_by_us: false,
        cert,
    };
    // The peer task is gone (removed, shutting down): the connection drops.
    let _ = peer.conn_tx.send(ConnEvent::Conn(conn)).await;
}

// ---- dialing -------------------------------------------------------------------

pub(super) async fn dial(
    endpoint: Endpoint,
    site: SiteId,
    addr: SocketAddr,
    timeout_ms: u64,
) -> ConnEvent {
    let failed = |error: String, refused: bool| ConnEvent::DialFailed { error, refused };
    // The server name makes TLS check the peer's certificate names this site.
    let connecting = match endpoint.connect(addr, &tls::site_name(site)) {
        Ok(c) => c,
        Err(e) => return failed(format!("connect {addr}: {e}"), false),
    };
    let timeout = Duration::from_millis(timeout_ms);
    let connection = match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return match refusal_of(&e) {
                Some(why) => failed(why, true),
                None => failed(format!("connect {addr}: {e}"), false),
            }
        }
        Err(_) => return failed(format!("connect {addr}: timed out"), false),
    };
    let cert = peer_cert(&connection);
    match connection.open_bi().await {
        Ok((send, recv)) => ConnEvent::Conn(NewConn {
            connection,
            send,
            recv,
            dialed_by_us: true,
            cert,
        }),
        Err(e) => failed(format!("open stream to {addr}: {e}"), false),
    }
}
