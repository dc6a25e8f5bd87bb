//! chorus-sim: deterministic simulation of a Chorus cluster.
//!
//! N sites run the real engine on in-memory disks that separate durable from
//! volatile bytes, and replicate through the real `PeerSession`s over a
//! simulated network, all on virtual time in one thread, driven by one seed.
//! Faults (crashes, torn writes, wiped disks, pauses, partitions, clogs,
//! connection resets, replayed messages, clock skew and jumps) are injected from
//! a per-seed fault profile while a workload of typed commands runs; checkers
//! hold the invariants of docs/simulator.md after every event and at the end.
//!
//! Modules: [`rng`] (the pinned PRNG), [`sched`] (the event queue), [`storage`]
//! (a site's disk), [`net`] (the network model), [`profile`] (per-seed fault
//! profile), [`workload`] (client commands), [`oracle`] (the exact per-type
//! oracle), [`check`] (the checkers), [`sim`] (one run), [`report`] (JSON
//! summaries and exit codes).

pub mod check;
pub mod net;
pub mod oracle;
pub mod profile;
pub mod report;
pub mod rng;
pub mod sched;
pub mod sim;
pub mod storage;
pub mod trace;
pub mod workload;

pub use report::{run_one, RunReport};
pub use sim::{Canary, Outcome, RunConfig, Sim, Verdict, ANTI_ENTROPY_INTERVAL_MS};
