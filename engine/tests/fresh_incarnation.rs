//! A brand-new data directory starts at `EngineConfig::fresh_incarnation`
//! (the server passes the wall-clock seconds), so a site rebuilt on an empty
//! disk never reissues the OpIds of its earlier life, even for writes it takes
//! before any peer has told it about them.

use bytes::Bytes;
use chorus_engine::storage::memory::MemoryStorage;
use chorus_engine::storage::Storage;
use chorus_engine::{Engine, EngineConfig, Reply};

fn config(fresh_incarnation: u32) -> EngineConfig {
    let mut c = EngineConfig::new(3);
    c.fresh_incarnation = fresh_incarnation;
    c
}

fn set(e: &mut Engine, key: &str) {
    let args = [
        Bytes::from("SET"),
        Bytes::from(key.to_owned()),
        Bytes::from("v"),
    ];
    assert_eq!(e.execute(0, &args, 1_000), Reply::Ok);
}

fn mem(e: &mut Engine) -> &mut MemoryStorage {
    e.storage_mut()
        .as_any_mut()
        .downcast_mut::<MemoryStorage>()
        .expect("memory storage")
}

#[test]
fn a_fresh_directory_starts_at_the_given_incarnation() {
    let mut e = Engine::open(Box::new(MemoryStorage::new()), config(1_700_000_000)).unwrap();
    assert_eq!(e.origin().incarnation, 1_700_000_000);
    set(&mut e, "k");
    assert_eq!(e.last_local_seq(), 1);
    // Only a brand-new directory takes it: a clean restart keeps its own,
    // whatever the caller passes now.
    e.shutdown(2_000).unwrap();
    let storage = mem(&mut e).durable_image();
    let e = Engine::open(Box::new(storage), config(1_800_000_000)).unwrap();
    assert_eq!(e.origin().incarnation, 1_700_000_000);
    assert_eq!(e.last_local_seq(), 1);
}

#[test]
fn an_unclean_stop_still_moves_one_incarnation_up() {
    let mut e = Engine::open(Box::new(MemoryStorage::new()), config(500)).unwrap();
    set(&mut e, "k");
    e.sync().unwrap();
    let storage = mem(&mut e).durable_image();
    let e = Engine::open(Box::new(storage), config(9_999)).unwrap();
    assert_eq!(e.origin().incarnation, 501);
}

#[test]
fn a_larger_incarnation_already_set_in_a_fresh_directory_is_kept() {
    let mut storage = MemoryStorage::new();
    storage
        .meta_put("incarnation", &7_000u32.to_le_bytes())
        .unwrap();
    let e = Engine::open(Box::new(storage), config(5)).unwrap();
    assert_eq!(e.origin().incarnation, 7_000);
    let e = Engine::open(Box::new(MemoryStorage::new()), config(0)).unwrap();
    assert_eq!(e.origin().incarnation, 0);
}
