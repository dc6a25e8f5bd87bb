//! chorus-replication: wire messages, the sans-IO peer session and the QUIC driver.
//!
//! * [`wire`]: messages and their length-prefixed postcard frames, every size bounded.
//! * [`session`]: [`PeerSession`], the replication state machine for one peer; it
//!   reads no clock, spawns nothing, touches no socket and draws no randomness, so
//!   the QUIC driver and the deterministic simulator drive the very same code.
//! * [`pubsub`]: pub/sub across sites (numbering, de-duplication, bounded
//!   per-peer queues), sans-IO; the QUIC driver carries it on a stream of its own.
//! * [`backoff`]: reconnect delays shared by the driver and the simulator.
//! * [`rate_limit`]: the per-peer token bucket.
//! * `quic` (feature `quic`, on by default): the driver that runs the sessions
//!   over QUIC with mutual TLS (tokio + quinn + rustls/ring, rcgen for
//!   certificates). Without the feature the crate is the sans-IO core alone:
//!   `cargo tree -p chorus-replication --no-default-features` has no tokio.

pub mod backoff;
pub mod pubsub;
#[cfg(feature = "quic")]
pub mod quic;
pub mod rate_limit;
pub mod session;
pub mod wire;

pub use backoff::Backoff;
#[cfg(feature = "quic")]
pub use quic::{EndpointStatus, PeerStatus, Replication, ReplicationConfig, TlsIdentity};
pub use rate_limit::TokenBucket;
pub use session::{
    ConfigError, PeerSession, PeerState, SessionConfig, SessionError, SessionEvent, SessionStats,
    SyncDirection,
};
pub use wire::{FrameDecoder, Hello, Message, RefuseReason, SnapshotRow, WireError};
