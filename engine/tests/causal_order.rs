//! An op that reaches a site before its deps waits in the causal buffer until
//! they arrive. Honest peers never send one (every log is in causal order and
//! a session resumes from the receiver's vector); the buffer is what stands
//! between a faulty or out-of-date peer and a wrong state. The simulator's
//! `skip-deps` canary has no path to show in its network model, so this test
//! is what would catch it.

use bytes::Bytes;
use chorus_engine::storage::memory::MemoryStorage;
use chorus_engine::{Engine, EngineConfig, Reply, VersionVector};

fn site(id: u16, skip_deps: bool) -> Engine {
    let mut config = EngineConfig::new(id);
    config.canaries.skip_deps = skip_deps;
    Engine::open(Box::new(MemoryStorage::new()), config).expect("open")
}

fn run(e: &mut Engine, now: u64, cmd: &str) -> Reply {
    let args: Vec<Bytes> = cmd
        .split(' ')
        .map(|s| Bytes::copy_from_slice(s.as_bytes()))
        .collect();
    e.execute(0, &args, now)
}

/// Site 3 gets site 2's SREM (which observed site 1's SADD) before the SADD
/// itself; returns what SMEMBERS answers at site 3 after both.
fn remove_before_add(skip_deps: bool) -> (usize, Reply) {
    let mut a = site(1, false);
    let mut b = site(2, false);
    let mut c = site(3, skip_deps);
    assert_eq!(run(&mut a, 1_000, "SADD s x"), Reply::Int(1));
    let adds = a.ops_since(&VersionVector::new(), usize::MAX).unwrap();
    b.apply_remote(adds.clone());
    assert_eq!(run(&mut b, 2_000, "SREM s x"), Reply::Int(1));
    let mut removes = b.ops_since(&VersionVector::new(), usize::MAX).unwrap();
    removes.retain(|op| op.id.origin.site == 2);
    let early = c.apply_remote(removes);
    c.apply_remote(adds);
    (early.buffered, run(&mut c, 3_000, "SMEMBERS s"))
}

#[test]
fn an_op_that_arrives_before_its_deps_waits_for_them() {
    let (buffered, members) = remove_before_add(false);
    assert_eq!(buffered, 1, "the SREM must wait for the SADD it observed");
    assert_eq!(members, Reply::Set(vec![]));
}

#[test]
fn the_skip_deps_canary_resurrects_the_removed_member() {
    // The same run with the dep check off: the SREM removes nothing, the SADD
    // then adds `x`, and the sites disagree for good. This is what the test
    // above exists to catch.
    let (buffered, members) = remove_before_add(true);
    assert_eq!(buffered, 0);
    assert_eq!(
        members,
        Reply::Set(vec![Reply::Bulk(Bytes::from_static(b"x"))])
    );
}
