//! Chorus: a conflict-free multi-master key-value store.
//!
//! This facade crate embeds a whole site in a Rust program: [`Site`] opens a
//! data directory, runs the same housekeeping chorus-server runs, and (with
//! [`Peering`]) replicates over QUIC with mutual TLS to other sites, embedded
//! or chorus-server processes alike. It needs no tokio runtime from the
//! caller. The engine, the housekeeping policy and replication are
//! re-exported for programs that drive them themselves. It also owns the
//! benches in `benches/`.
//!
//! ```no_run
//! use chorus::{Site, SiteOptions};
//! let site = Site::open("/tmp/chorus-site-1", SiteOptions::new(1))?;
//! site.incr_by(b"visits", 1)?;
//! site.sadd(b"seen", b"alice")?;
//! assert_eq!(site.get(b"visits")?.as_deref(), Some(&b"1"[..]));
//! site.close()?;
//! # Ok::<(), chorus::Error>(())
//! ```
//!
//! `examples/embedded.rs` runs two embedded sites in one process,
//! replicating over loopback.

#![warn(missing_docs)]

mod site;

pub use chorus_engine as engine;
pub use chorus_engine::Origin;
pub use chorus_engine::{Fsync, Reply, VersionVector};
pub use chorus_replication as replication;
pub use chorus_site as housekeeping;
pub use chorus_site::{Change, ChangeSource, Subscription};
pub use site::{Error, Peering, Site, SiteOptions};
