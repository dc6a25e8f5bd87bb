//! Every start takes a new incarnation, above the stored one and at least
//! `EngineConfig::incarnation_floor` (the server passes the wall-clock
//! seconds), so a site started on a restored, rolled-back or cloned disk
//! never reissues the OpIds of a later life, even for writes it takes before
//! any peer has told it about them. Where the floor cannot help (two starts
//! at one floor), a peer's op under an OpId held with another op is refused,
//! never dropped as a duplicate.

use bytes::Bytes;
use chorus_engine::storage::memory::MemoryStorage;
use chorus_engine::storage::Storage;
use chorus_engine::{Engine, EngineConfig, EngineError, OpIdConflict, Reply, VersionVector};

fn config(floor: u32) -> EngineConfig {
    let mut c = EngineConfig::new(3);
    c.incarnation_floor = floor;
    c
}

fn run(e: &mut Engine, args: &[&str]) -> Reply {
    let args: Vec<Bytes> = args.iter().map(|a| Bytes::from(a.to_string())).collect();
    e.execute(0, &args, 1_000)
}

fn mem(e: &mut Engine) -> &mut MemoryStorage {
    e.storage_mut()
        .as_any_mut()
        .downcast_mut::<MemoryStorage>()
        .expect("memory storage")
}

/// A clean stop's disk image.
fn stop(mut e: Engine) -> MemoryStorage {
    e.shutdown(2_000).unwrap();
    mem(&mut e).durable_image()
}

#[test]
fn a_fresh_directory_starts_at_the_floor() {
    let mut e = Engine::open(Box::new(MemoryStorage::new()), config(1_700_000_000)).unwrap();
    assert_eq!(e.origin().incarnation, 1_700_000_000);
    run(&mut e, &["SET", "k", "v"]);
    assert_eq!(e.last_local_seq(), 1);
    let e = Engine::open(Box::new(MemoryStorage::new()), config(0)).unwrap();
    assert_eq!(e.origin().incarnation, 0);
}

#[test]
fn every_start_takes_a_new_incarnation_clean_or_not() {
    let mut e = Engine::open(Box::new(MemoryStorage::new()), config(500)).unwrap();
    run(&mut e, &["SET", "k", "v"]);
    // A clean restart in the same second: one above the stored one.
    let e = Engine::open(Box::new(stop(e)), config(500)).unwrap();
    assert_eq!(e.origin().incarnation, 501);
    assert_eq!(e.last_local_seq(), 0);
    // A later second: the floor.
    let e = Engine::open(Box::new(stop(e)), config(9_999)).unwrap();
    assert_eq!(e.origin().incarnation, 9_999);
    // A clock that went back: still above the stored one.
    let mut e = Engine::open(Box::new(stop(e)), config(10)).unwrap();
    assert_eq!(e.origin().incarnation, 10_000);
    // An unclean stop too.
    run(&mut e, &["SET", "k", "w"]);
    e.sync().unwrap();
    let storage = mem(&mut e).durable_image();
    let e = Engine::open(Box::new(storage), config(10)).unwrap();
    assert_eq!(e.origin().incarnation, 10_001);
    assert_eq!(
        run(&mut { e }, &["GET", "k"]),
        Reply::Bulk(Bytes::from("w"))
    );
}

#[test]
fn a_larger_incarnation_already_set_in_a_fresh_directory_is_kept() {
    let mut storage = MemoryStorage::new();
    storage
        .meta_put("incarnation", &7_000u32.to_le_bytes())
        .unwrap();
    let e = Engine::open(Box::new(storage), config(5)).unwrap();
    assert_eq!(e.origin().incarnation, 7_000);
}

/// The restore of docs/operations.md at the engine: a backup taken after a
/// clean stop, a later life whose ops reached a peer, the backup put back
/// and writes taken at once. With the floor moving on (a later second), no
/// OpId is issued twice and the peer keeps every write of both lives.
#[test]
fn a_restored_disk_issues_no_opid_of_a_later_life() {
    let mut peer = Engine::open(Box::new(MemoryStorage::new()), EngineConfig::new(2)).unwrap();
    let mut site = Engine::open(Box::new(MemoryStorage::new()), config(100)).unwrap();
    run(&mut site, &["SET", "base", "v"]);
    let backup = stop(site);
    let mut site = Engine::open(Box::new(backup.clone()), config(101)).unwrap();
    run(&mut site, &["SET", "a", "after1"]);
    run(&mut site, &["INCR", "n"]);
    peer.apply_remote(site.ops_since(peer.vv(), usize::MAX).unwrap());
    drop(site);
    // The old copy comes back, in a later second.
    let mut site = Engine::open(Box::new(backup), config(102)).unwrap();
    assert_eq!(site.origin().incarnation, 102);
    run(&mut site, &["SET", "b", "after2"]);
    run(&mut site, &["INCRBY", "n", "10"]);
    let out = peer.apply_remote(site.ops_since(peer.vv(), usize::MAX).unwrap());
    assert_eq!(out.conflict, None);
    assert_eq!((out.applied, out.duplicates), (2, 0));
    // The peer's ops of the second life go back to the restored site.
    assert!(!peer.observe_peer_vv(site.vv()).unwrap());
    site.apply_remote(peer.ops_since(site.vv(), usize::MAX).unwrap());
    for e in [&mut site, &mut peer] {
        assert_eq!(run(e, &["GET", "a"]), Reply::Bulk(Bytes::from("after1")));
        assert_eq!(run(e, &["GET", "b"]), Reply::Bulk(Bytes::from("after2")));
        assert_eq!(run(e, &["GET", "n"]), Reply::Bulk(Bytes::from("11")));
    }
    assert_eq!(site.digest_hex(), peer.digest_hex());
}

/// Where the floor cannot help (the restored start takes the incarnation of
/// the lost life: same second, or a clock that went back), the ops issued
/// twice are refused by the peer and by the site itself, never dropped as
/// duplicates.
#[test]
fn ops_issued_twice_are_refused_not_dropped() {
    let mut peer = Engine::open(Box::new(MemoryStorage::new()), EngineConfig::new(2)).unwrap();
    let mut site = Engine::open(Box::new(MemoryStorage::new()), config(100)).unwrap();
    run(&mut site, &["SET", "base", "v"]);
    let backup = stop(site);
    let mut site = Engine::open(Box::new(backup.clone()), config(101)).unwrap();
    run(&mut site, &["SET", "a", "after1"]);
    run(&mut site, &["INCR", "n"]);
    peer.apply_remote(site.ops_since(peer.vv(), usize::MAX).unwrap());
    let lost_life = site.ops_since(&VersionVector::new(), usize::MAX).unwrap();
    drop(site);
    // The peer restarts meanwhile, its log trimmed: it still knows (by hash)
    // the newest op it holds of each origin.
    peer.shutdown(3_000).unwrap();
    let all = peer.vv().clone();
    peer.trim_backlog(&all);
    let image = mem(&mut peer).durable_image();
    let mut peer = Engine::open(Box::new(image), EngineConfig::new(2)).unwrap();
    assert_eq!(peer.stats().recovered_ops, 0, "nothing left to replay");
    // Restored with the same floor: the same incarnation as the lost life.
    // As many ops as the lost life: the peer finds its newest one differs.
    let mut site = Engine::open(Box::new(backup.clone()), config(101)).unwrap();
    assert_eq!(site.origin().incarnation, 101);
    run(&mut site, &["SET", "b", "after2"]);
    run(&mut site, &["INCRBY", "n", "10"]);
    let conflicts_before = peer.stats().opid_conflicts;
    let out = peer.apply_remote(site.ops_since(&VersionVector::new(), usize::MAX).unwrap());
    let id = match out.conflict {
        Some(OpIdConflict::Payload { id }) => id,
        other => panic!("expected a payload conflict, got {other:?}"),
    };
    assert_eq!(id.origin, site.origin());
    assert_eq!(peer.stats().opid_conflicts, conflicts_before + 1);
    assert_eq!(run(&mut peer, &["GET", "b"]), Reply::Nil, "nothing merged");
    // Fewer ops than the lost life: the site sees at the handshake that
    // the peer holds more of its current incarnation than it issued.
    let mut site = Engine::open(Box::new(backup), config(101)).unwrap();
    run(&mut site, &["SET", "b", "after2"]);
    let err = site.observe_peer_vv(peer.vv()).unwrap_err();
    assert!(
        matches!(err, EngineError::ReissuedOpIds { from: 1, to: 1, .. }),
        "{err}"
    );
    // And a peer's op of the site's current incarnation it lacks is refused.
    let mut one = Engine::open(Box::new(MemoryStorage::new()), config(101)).unwrap();
    run(&mut one, &["SET", "x", "1"]);
    let theirs: Vec<_> = lost_life
        .into_iter()
        .filter(|op| op.id.origin == one.origin() && op.id.seq == 2)
        .collect();
    assert_eq!(theirs.len(), 1);
    let out = one.apply_remote(theirs);
    assert!(
        matches!(out.conflict, Some(OpIdConflict::Reissued { .. })),
        "{out:?}"
    );
}
