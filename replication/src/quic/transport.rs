//! The quinn endpoint: one UDP socket per site that both accepts peers
//! (server side, client certificate required) and dials them (client side),
//! with the transport limits set explicitly rather than left to defaults.

use super::tls::TlsIdentity;
use super::Error;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Endpoint, EndpointConfig, IdleTimeout, TokioRuntime, TransportConfig, VarInt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Receive window of the one replication stream: holds a full default batch
/// (1 MiB) many times over so that a round trip never idles the sender.
pub const STREAM_RECEIVE_WINDOW_BYTES: u32 = 16 << 20;
/// Receive window of a whole connection.
pub const CONNECTION_RECEIVE_WINDOW_BYTES: u32 = 32 << 20;
/// Bytes in flight per connection.
pub const SEND_WINDOW_BYTES: u64 = 32 << 20;
/// Connections being handshaken at once (quinn's own bound on `Incoming`s).
pub const INCOMING_MAX: usize = 64;

/// QUIC transport settings shared by both directions.
pub(crate) fn transport_config(
    keep_alive_ms: u64,
    idle_timeout_ms: u64,
) -> Result<TransportConfig, Error> {
    let mut t = TransportConfig::default();
    // One bidirectional stream per connection, opened by the dialer (ops),
    // and one unidirectional stream each way (pub/sub messages, protocol 8).
    t.max_concurrent_bidi_streams(VarInt::from_u32(1));
    t.max_concurrent_uni_streams(VarInt::from_u32(1));
    t.keep_alive_interval(Some(Duration::from_millis(keep_alive_ms)));
    let idle = IdleTimeout::try_from(Duration::from_millis(idle_timeout_ms))
        .map_err(|e| Error::Config(format!("idle_timeout_ms: {e}")))?;
    t.max_idle_timeout(Some(idle));
    t.stream_receive_window(VarInt::from_u32(STREAM_RECEIVE_WINDOW_BYTES));
    t.receive_window(VarInt::from_u32(CONNECTION_RECEIVE_WINDOW_BYTES));
    t.send_window(SEND_WINDOW_BYTES);
    t.enable_segmentation_offload(true);
    Ok(t)
}

/// Binds `listen` and builds the endpoint: server config requiring a client
/// certificate from the cluster CA, default client config presenting ours.
pub(crate) fn bind(
    listen: SocketAddr,
    tls: &TlsIdentity,
    transport: TransportConfig,
    udp_buffer_bytes: usize,
) -> Result<Endpoint, Error> {
    let transport = Arc::new(transport);
    let server_crypto = QuicServerConfig::try_from(tls.server_config()?)
        .map_err(|e| Error::Config(format!("server TLS: {e}")))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
    server.transport_config(transport.clone());
    server.max_incoming(INCOMING_MAX);
    let client_crypto = QuicClientConfig::try_from(tls.client_config()?)
        .map_err(|e| Error::Config(format!("client TLS: {e}")))?;
    let mut client = quinn::ClientConfig::new(Arc::new(client_crypto));
    client.transport_config(transport);

    let socket = std::net::UdpSocket::bind(listen).map_err(|source| Error::Bind {
        addr: listen,
        source,
    })?;
    enlarge_buffers(&socket, udp_buffer_bytes);
    let mut endpoint = Endpoint::new(
        EndpointConfig::default(),
        Some(server),
        socket,
        Arc::new(TokioRuntime),
    )
    .map_err(|source| Error::Bind {
        addr: listen,
        source,
    })?;
    endpoint.set_default_client_config(client);
    Ok(endpoint)
}

/// Bigger socket buffers absorb bursts of a fast peer; the kernel caps them
/// (`net.core.rmem_max`), and failing to raise them is not fatal.
fn enlarge_buffers(socket: &std::net::UdpSocket, bytes: usize) {
    if bytes == 0 {
        return;
    }
    let state = match quinn::udp::UdpSocketState::new(socket.into()) {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "UDP socket state unavailable; default buffers");
            return;
        }
    };
    if let Err(e) = state.set_recv_buffer_size(socket.into(), bytes) {
        tracing::debug!(error = %e, bytes, "could not raise the UDP receive buffer");
    }
    if let Err(e) = state.set_send_buffer_size(socket.into(), bytes) {
        tracing::debug!(error = %e, bytes, "could not raise the UDP send buffer");
    }
}
