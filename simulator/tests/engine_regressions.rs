//! Engine bugs the simulator found, reduced to a few lines each.

use bytes::Bytes;
use chorus_engine::{Engine, EngineConfig};
use chorus_sim::storage::SharedDisk;

fn cmd(e: &mut Engine, s: &str) -> chorus_engine::Reply {
    let a: Vec<Bytes> = s
        .split(' ')
        .map(|x| Bytes::copy_from_slice(x.as_bytes()))
        .collect();
    e.execute(0, &a, 1_000)
}

/// Rows changed by log replay at open must be written by the next checkpoint:
/// otherwise that checkpoint covers the replayed ops in its version vector
/// while holding their rows as of the previous checkpoint, and the next
/// recovery skips those ops. Found by `chorus-sim run --seed 45 --ops 1500`.
#[test]
fn replayed_ops_survive_a_second_checkpoint() {
    let disk = SharedDisk::new();
    let mut e = Engine::open(disk.boxed(), EngineConfig::new(1)).unwrap();
    cmd(&mut e, "SET k v");
    e.checkpoint(1_000).unwrap();
    cmd(&mut e, "DEL k");
    e.sync().unwrap();
    drop(e);
    disk.lock().crash(0);
    let mut e = Engine::open(disk.boxed(), EngineConfig::new(1)).unwrap();
    assert_eq!(cmd(&mut e, "GET k"), chorus_engine::Reply::Nil);
    e.checkpoint(2_000).unwrap();
    drop(e);
    disk.lock().crash(0);
    let mut e = Engine::open(disk.boxed(), EngineConfig::new(1)).unwrap();
    assert_eq!(
        cmd(&mut e, "GET k"),
        chorus_engine::Reply::Nil,
        "DEL replayed at the first restart was lost by the second"
    );
}
