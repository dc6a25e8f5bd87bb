//! Ops applied from a peer together with the bytes they came in
//! (`Engine::apply_remote_encoded`) end up exactly as ops applied and encoded
//! here (`Engine::apply_remote`): same state, same backlog bytes for our own
//! peers, and a log that a restart replays to the same state.

use bytes::Bytes;
use chorus_engine::log::{decode_op, encode_op};
use chorus_engine::storage::memory::MemoryStorage;
use chorus_engine::storage::redb_backend::RedbStorage;
use chorus_engine::{Engine, EngineConfig, Op, VersionVector};

fn mem(site: u16) -> Engine {
    Engine::open(Box::new(MemoryStorage::new()), EngineConfig::new(site)).unwrap()
}

fn run(e: &mut Engine, now: u64, cmd: &str) {
    let args: Vec<Bytes> = cmd
        .split(' ')
        .map(|s| Bytes::copy_from_slice(s.as_bytes()))
        .collect();
    let reply = e.execute(0, &args, now);
    assert!(!reply.is_error(), "{cmd}: {reply:?}");
}

/// Every type of write, from one origin.
fn source_ops() -> Vec<Op> {
    let mut a = mem(1);
    for i in 0..300u64 {
        let cmd = match i % 6 {
            0 => format!("SET k{} v{i}", i % 17),
            1 => format!("INCRBY n{} {i}", i % 5),
            2 => format!("HSET h f{} {i}", i % 7),
            3 => format!("SADD s m{}", i % 11),
            4 => format!("ZINCRBY z {i} m{}", i % 3),
            _ => format!("DEL k{}", i % 17),
        };
        run(&mut a, 1_000 + i, &cmd);
    }
    a.ops_since(&VersionVector::new(), usize::MAX).unwrap()
}

#[test]
fn ops_applied_with_their_wire_bytes_match_ops_encoded_here() {
    let ops = source_ops();
    let wire: Vec<Bytes> = ops.iter().map(encode_op).collect();
    let mut b = mem(2);
    b.apply_remote(ops.clone());

    let dir = tempfile::tempdir().unwrap();
    let storage = RedbStorage::open(dir.path()).unwrap();
    let mut c = Engine::open(Box::new(storage), EngineConfig::new(3)).unwrap();
    // Out of order on purpose: a batch whose first op waits for its deps
    // goes through the causal buffer (and is encoded here instead).
    let mut pairs: Vec<(Op, Bytes)> = wire
        .iter()
        .map(|w| (decode_op(w).unwrap(), w.clone()))
        .collect();
    pairs.swap(0, 1);
    let out = c.apply_remote_encoded(pairs);
    assert_eq!(out.applied, ops.len());
    assert_eq!(c.digest_hex(), b.digest_hex());
    let kept = |e: &mut Engine| -> Vec<Bytes> {
        let cursor = e.backlog_cursor(&VersionVector::new()).unwrap();
        let (entries, _) = e
            .backlog_read(cursor, &VersionVector::new(), usize::MAX, usize::MAX)
            .unwrap();
        entries.into_iter().map(|e| e.bytes).collect()
    };
    assert_eq!(
        kept(&mut c),
        kept(&mut b),
        "peers get the same bytes from both"
    );

    c.sync().unwrap();
    let digest = c.digest_hex();
    drop(c); // unclean: the restart replays the log
    let storage = RedbStorage::open(dir.path()).unwrap();
    let c = Engine::open(Box::new(storage), EngineConfig::new(3)).unwrap();
    assert_eq!(c.digest_hex(), digest);
}

#[test]
fn an_op_with_bytes_after_it_is_refused() {
    let op = source_ops().remove(0);
    let mut bytes = encode_op(&op).to_vec();
    assert!(decode_op(&bytes).is_ok());
    bytes.push(0);
    assert!(
        decode_op(&bytes).is_err(),
        "trailing bytes would be logged and forwarded"
    );
}
