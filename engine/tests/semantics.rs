//! One named test per rule of the "Semantics under concurrency" table (docs/semantics.md)
//! (strings, counters, keys, expiry, flush). Two or three engines make writes
//! concurrently (neither has seen the other's), exchange their ops, and must
//! agree on the value the rule names and on the digest.

use bytes::Bytes;
use chorus_engine::redis::hll::pat_len;
use chorus_engine::storage::memory::MemoryStorage;
use chorus_engine::{Engine, EngineConfig, Reply, VersionVector};

fn site(id: u16) -> Engine {
    Engine::open(Box::new(MemoryStorage::new()), EngineConfig::new(id)).expect("open")
}

fn run(e: &mut Engine, now: u64, cmd: &str) -> Reply {
    let args: Vec<Bytes> = cmd
        .split(' ')
        .map(|s| Bytes::copy_from_slice(s.as_bytes()))
        .collect();
    e.execute(0, &args, now)
}

/// Delivers every op `from` has that `to` lacks.
fn deliver(from: &mut Engine, to: &mut Engine) {
    let ops = from.ops_since(to.vv(), usize::MAX).expect("backlog serves");
    to.apply_remote(ops);
}

fn exchange(sites: &mut [Engine]) {
    for _ in 0..2 {
        for i in 0..sites.len() {
            for j in 0..sites.len() {
                if i != j {
                    let (a, b) = if i < j {
                        let (l, r) = sites.split_at_mut(j);
                        (&mut l[i], &mut r[0])
                    } else {
                        let (l, r) = sites.split_at_mut(i);
                        (&mut r[0], &mut l[j])
                    };
                    deliver(a, b);
                }
            }
        }
    }
    let d = sites[0].digest_hex();
    for s in sites.iter() {
        assert_eq!(s.digest_hex(), d, "digests differ after exchange");
        assert_eq!(s.vv(), sites[0].vv());
    }
}

fn bulk(s: &str) -> Reply {
    Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

#[test]
fn lww_string_greater_hlc_wins() {
    let mut a = site(1);
    let mut b = site(2);
    run(&mut a, 1000, "SET k a");
    run(&mut b, 2000, "SET k b");
    let mut s = [a, b];
    exchange(&mut s);
    for e in s.iter_mut() {
        assert_eq!(run(e, 3000, "GET k"), bulk("b"));
    }
}

#[test]
fn lww_tie_broken_by_site_id() {
    let mut a = site(1);
    let mut b = site(2);
    run(&mut a, 1000, "SET k a");
    run(&mut b, 1000, "SET k b");
    let mut s = [a, b];
    exchange(&mut s);
    assert_eq!(run(&mut s[0], 3000, "GET k"), bulk("b"));
}

#[test]
fn causally_later_write_wins_even_with_older_clock() {
    let mut a = site(1);
    let mut b = site(2);
    run(&mut a, 5000, "SET k a");
    deliver(&mut a, &mut b);
    // b's wall clock is behind, but it has seen a's write.
    run(&mut b, 1000, "SET k b");
    let mut s = [a, b];
    exchange(&mut s);
    assert_eq!(run(&mut s[0], 6000, "GET k"), bulk("b"));
}

#[test]
fn concurrent_increments_add_up() {
    let mut a = site(1);
    let mut b = site(2);
    let mut c = site(3);
    for _ in 0..5 {
        run(&mut a, 1000, "INCR n");
        run(&mut b, 1000, "INCRBY n 10");
        run(&mut c, 1000, "DECR n");
    }
    let mut s = [a, b, c];
    exchange(&mut s);
    for e in s.iter_mut() {
        assert_eq!(run(e, 2000, "GET n"), bulk("50"));
    }
}

#[test]
fn set_resets_only_observed_increments() {
    let mut a = site(1);
    let mut b = site(2);
    run(&mut a, 1000, "INCRBY n 5");
    deliver(&mut a, &mut b);
    // b has seen +5; a concurrently adds +3 that b's SET has not seen.
    run(&mut a, 1100, "INCRBY n 3");
    run(&mut b, 1200, "SET n 100");
    let mut s = [a, b];
    exchange(&mut s);
    for e in s.iter_mut() {
        assert_eq!(run(e, 2000, "GET n"), bulk("103"));
    }
}

#[test]
fn non_integer_set_drops_unobserved_increments() {
    let mut a = site(1);
    let mut b = site(2);
    run(&mut a, 1000, "INCR n");
    run(&mut b, 1200, "SET n hello");
    let mut s = [a, b];
    exchange(&mut s);
    assert_eq!(run(&mut s[0], 2000, "GET n"), bulk("hello"));
    assert_eq!(
        run(&mut s[0], 2000, "INCR n"),
        Reply::err("ERR value is not an integer or out of range")
    );
}

/// A float increment starts from what the cell holds, not from what it shows:
/// the increments a non-integer base hides stay hidden (Redis: 1.5 + 1).
#[test]
fn incrbyfloat_over_hidden_increments_adds_to_the_shown_value() {
    let mut a = site(1);
    let mut b = site(2);
    run(&mut a, 1000, "INCR n");
    run(&mut b, 1200, "SET n 1.5");
    let mut s = [a, b];
    exchange(&mut s);
    assert_eq!(run(&mut s[0], 2000, "GET n"), bulk("1.5"));
    assert_eq!(run(&mut s[0], 2100, "INCRBYFLOAT n 1"), bulk("2.5"));
    exchange(&mut s);
    assert_eq!(run(&mut s[1], 3000, "GET n"), bulk("2.5"));
    run(&mut s[1], 3100, "HSET h f 7");
    exchange(&mut s);
    run(&mut s[0], 3200, "HINCRBY h f 2");
    run(&mut s[1], 3200, "HSET h f 0.5");
    exchange(&mut s);
    assert_eq!(run(&mut s[0], 4000, "HINCRBYFLOAT h f 1"), bulk("1.5"));
    exchange(&mut s);
    assert_eq!(run(&mut s[1], 5000, "HGET h f"), bulk("1.5"));
}

#[test]
fn incrbyfloat_sums_identically_everywhere() {
    let mut a = site(1);
    let mut b = site(2);
    run(&mut a, 1000, "SET f 10.5");
    deliver(&mut a, &mut b);
    run(&mut a, 1100, "INCRBYFLOAT f 0.1");
    run(&mut b, 1100, "INCRBYFLOAT f 0.2");
    let mut s = [a, b];
    exchange(&mut s);
    let v0 = run(&mut s[0], 2000, "GET f");
    let v1 = run(&mut s[1], 2000, "GET f");
    assert_eq!(v0, v1);
    assert_eq!(v0, bulk("10.8"));
    assert_eq!(s[0].digest_hex(), s[1].digest_hex());
    // After convergence a site goes on as Redis would from the shown value
    // (long double: 1.57 + 0.5 is 2.07, where an f64 gives 2.0700000000000003).
    run(&mut s[1], 2100, "SET f 1.57");
    assert_eq!(run(&mut s[1], 2200, "INCRBYFLOAT f 0.5"), bulk("2.07"));
    assert_eq!(
        run(&mut s[1], 2300, "INCRBYFLOAT f -1e3"),
        bulk("-997.92999999999999999")
    );
    exchange(&mut s);
    assert_eq!(
        run(&mut s[0], 3000, "GET f"),
        bulk("-997.92999999999999999")
    );
}

#[test]
fn float_increments_merge_exactly_in_snapshots() {
    let mut a = site(1);
    let mut b = site(2);
    run(&mut a, 1000, "SET f 0.2");
    run(&mut a, 1000, "HSET h x 1.6");
    deliver(&mut a, &mut b);
    run(&mut a, 1100, "INCRBYFLOAT f 0.1");
    run(&mut b, 1100, "INCRBYFLOAT f 1e-20");
    run(&mut a, 1100, "HINCRBYFLOAT h x -1e3");
    run(&mut b, 1100, "HINCRBYFLOAT h x 0x10");
    let snap = a.snapshot();
    b.merge_snapshot(snap);
    let snap = b.snapshot();
    a.merge_snapshot(snap);
    assert_eq!(a.digest_hex(), b.digest_hex());
    for e in [&mut a, &mut b] {
        // 0.3 (a's step) plus b's exact 1e-20, rounded to 17 digits.
        assert_eq!(run(e, 2000, "GET f"), bulk("0.3"));
        // -998.4 plus 16, both as their origins computed them.
        assert_eq!(run(e, 2000, "HGET h x"), bulk("-982.40000000000000002"));
    }
}

#[test]
fn counter_sum_outside_i64_is_exact_and_incr_overflows() {
    let mut a = site(1);
    let mut b = site(2);
    run(&mut a, 1000, "INCRBY n 9223372036854775807");
    run(&mut b, 1000, "INCRBY n 9223372036854775807");
    let mut s = [a, b];
    exchange(&mut s);
    assert_eq!(run(&mut s[0], 2000, "GET n"), bulk("18446744073709551614"));
    assert_eq!(
        run(&mut s[0], 2000, "INCR n"),
        Reply::err("ERR increment or decrement would overflow")
    );
}

#[test]
fn del_removes_only_what_it_observed() {
    let mut a = site(1);
    let mut b = site(2);
    run(&mut a, 1000, "SET k a");
    deliver(&mut a, &mut b);
    run(&mut b, 1100, "DEL k");
    // Concurrent with the DEL: a writes again.
    run(&mut a, 1050, "SET k a2");
    let mut s = [a, b];
    exchange(&mut s);
    for e in s.iter_mut() {
        assert_eq!(run(e, 2000, "GET k"), bulk("a2"));
    }
}

#[test]
fn del_that_saw_everything_deletes() {
    let mut a = site(1);
    let mut b = site(2);
    run(&mut a, 1000, "SET k a");
    run(&mut a, 1000, "INCR c");
    deliver(&mut a, &mut b);
    run(&mut b, 1100, "DEL k c");
    let mut s = [a, b];
    exchange(&mut s);
    assert_eq!(run(&mut s[0], 2000, "EXISTS k c"), Reply::Int(0));
}

#[test]
fn flushdb_is_observed_remove() {
    let mut a = site(1);
    let mut b = site(2);
    run(&mut a, 1000, "SET x 1");
    deliver(&mut a, &mut b);
    run(&mut b, 1100, "FLUSHDB");
    run(&mut a, 1050, "SET y 2");
    let mut s = [a, b];
    exchange(&mut s);
    for e in s.iter_mut() {
        assert_eq!(run(e, 2000, "GET x"), Reply::Nil);
        assert_eq!(run(e, 2000, "GET y"), bulk("2"));
    }
}

#[test]
fn persist_beats_concurrent_expire() {
    let mut a = site(1);
    let mut b = site(2);
    run(&mut a, 1000, "SET k v EX 100");
    deliver(&mut a, &mut b);
    run(&mut a, 1100, "PERSIST k");
    run(&mut b, 1200, "EXPIRE k 500");
    let mut s = [a, b];
    exchange(&mut s);
    for e in s.iter_mut() {
        assert_eq!(run(e, 2000, "TTL k"), Reply::Int(-1));
    }
}

#[test]
fn later_deadline_wins_among_concurrent_expires() {
    let mut a = site(1);
    let mut b = site(2);
    run(&mut a, 1000, "SET k v");
    deliver(&mut a, &mut b);
    run(&mut a, 1100, "EXPIRE k 100");
    run(&mut b, 1100, "EXPIRE k 50");
    let mut s = [a, b];
    exchange(&mut s);
    for e in s.iter_mut() {
        assert_eq!(run(e, 1100, "PTTL k"), Reply::Int(100_000));
    }
}

#[test]
fn expired_key_hidden_and_owner_deletes() {
    let mut a = site(1);
    let mut b = site(2);
    run(&mut a, 1000, "SET k v PX 100");
    deliver(&mut a, &mut b);
    assert_eq!(run(&mut b, 1200, "GET k"), Reply::Nil);
    // The owner of the winning deadline deletes once its clock is past the
    // deadline by the clock-skew bound (500 ms), not before: its clock may
    // run up to that much ahead of the others'.
    assert_eq!(a.expire_cycle(1599, 10), 0);
    assert_eq!(b.expire_cycle(1700, 10), 0, "not the owner: waits longer");
    assert_eq!(a.expire_cycle(1600, 10), 1);
    assert_eq!(a.stats().expired_keys_taken_over, 0, "the owner's own");
    deliver(&mut a, &mut b);
    assert_eq!(b.dbsize(0), 0);
    let mut s = [a, b];
    exchange(&mut s);
}

#[test]
fn expired_key_of_an_owner_that_is_gone_is_deleted_by_another_site() {
    let mut a = site(1);
    let mut b = site(2);
    run(&mut a, 1000, "SET k v PX 100");
    deliver(&mut a, &mut b);
    drop(a); // The owner is down for good, or removed from the cluster.
    assert_eq!(b.dbsize(0), 1, "hidden, but still held");
    let due = 1100 + 500 + chorus_engine::engine::EXPIRY_TAKEOVER_MS;
    assert_eq!(b.expire_cycle(due - 1, 10), 0);
    assert_eq!(b.expire_cycle(due, 10), 1);
    assert_eq!(b.dbsize(0), 0);
    assert_eq!(b.expires_count(0), 0);
    assert_eq!(
        b.stats().expired_keys_taken_over,
        1,
        "counted as a takeover"
    );
}

#[test]
fn two_sites_deleting_an_expired_key_converge_and_keep_a_concurrent_write() {
    let mut a = site(1);
    let mut b = site(2);
    let mut c = site(3);
    run(&mut a, 1000, "SET k v PX 100");
    deliver(&mut a, &mut b);
    deliver(&mut a, &mut c);
    let late = 1100 + 500 + chorus_engine::engine::EXPIRY_TAKEOVER_MS;
    // The owner deletes late (it was partitioned away), while another site
    // takes over, and a third writes the key again concurrently.
    assert_eq!(b.expire_cycle(late, 10), 1);
    assert_eq!(a.expire_cycle(late, 10), 1);
    run(&mut c, late, "SET k fresh");
    let mut s = [a, b, c];
    exchange(&mut s);
    for e in s.iter_mut() {
        assert_eq!(run(e, late + 1, "GET k"), bulk("fresh"));
        assert_eq!(run(e, late + 1, "TTL k"), Reply::Int(-1));
    }
}

/// `(DBSIZE, INFO keyspace expires=)` of db 0.
fn counts(e: &Engine) -> (usize, usize) {
    (e.dbsize(0), e.expires_count(0))
}

#[test]
fn emptied_key_takes_its_ttl_along() {
    let mut a = site(1);
    let mut b = site(2);
    run(&mut a, 1000, "HSET h f v");
    run(&mut a, 1000, "EXPIRE h 1000");
    deliver(&mut a, &mut b);
    // Removing the last field deletes the key, TTL included, as in Redis.
    assert_eq!(run(&mut a, 1100, "HDEL h f"), Reply::Int(1));
    assert_eq!(counts(&a), (0, 0));
    // A field written concurrently survives, without the TTL the delete saw.
    run(&mut b, 1100, "HSET h g w");
    let mut s = [a, b];
    exchange(&mut s);
    for e in s.iter_mut() {
        assert_eq!(run(e, 1200, "HGET h g"), bulk("w"));
        assert_eq!(run(e, 1200, "TTL h"), Reply::Int(-1));
        assert_eq!(counts(e), (1, 0));
    }
}

#[test]
fn expire_concurrent_with_del_leaves_no_key() {
    let mut a = site(1);
    let mut b = site(2);
    run(&mut a, 1000, "SADD k m");
    deliver(&mut a, &mut b);
    run(&mut a, 1100, "EXPIRE k 1000");
    run(&mut b, 1100, "DEL k");
    let mut s = [a, b];
    exchange(&mut s);
    // The EXPIRE's entry outlives the key it was written for: no key.
    for e in s.iter_mut() {
        assert_eq!(run(e, 1200, "EXISTS k"), Reply::Int(0));
        assert_eq!(counts(e), (0, 0));
    }
    // A write to it starts a new key, without that TTL.
    run(&mut s[0], 1300, "SADD k n");
    exchange(&mut s);
    for e in s.iter_mut() {
        assert_eq!(run(e, 1400, "TTL k"), Reply::Int(-1));
        assert_eq!(counts(e), (1, 0));
    }
}

#[test]
fn emptied_keys_are_not_counted_locally_remotely_or_after_restart() {
    let mut a = site(1);
    let mut b = site(2);
    let script = [
        "HSET h f v",
        "EXPIRE h 1000",
        "HDEL h f",
        "SADD s m",
        "EXPIRE s 1000",
        "SREM s m",
        "ZADD z 1 m",
        "EXPIRE z 1000",
        "ZPOPMIN z",
        "SADD src m",
        "EXPIRE src 1000",
        "SMOVE src dst m",
        "SET kept v EX 1000",
    ];
    for (i, cmd) in script.iter().enumerate() {
        run(&mut a, 1000 + i as u64, cmd);
        if i == 5 {
            // Half of it from a checkpoint, half from the log, on restart.
            a.checkpoint(1000 + i as u64).expect("checkpoint");
        }
    }
    // A row without a key, from an EXPIRE concurrent with a DEL.
    run(&mut a, 2000, "SET g v");
    deliver(&mut a, &mut b);
    run(&mut a, 2100, "PEXPIRE g 5000000");
    run(&mut b, 2100, "DEL g");
    deliver(&mut b, &mut a);
    deliver(&mut a, &mut b);
    // dst and kept are the keys; only kept has a TTL.
    let want = (2, 1);
    assert_eq!(counts(&a), want, "local");
    assert_eq!(counts(&b), want, "remote");
    let reopened = Engine::open(a.into_storage(), EngineConfig::new(1)).expect("reopen");
    assert_eq!(counts(&reopened), want, "after restart");
    assert_eq!(reopened.digest_hex(), b.digest_hex());
    b.checkpoint(3000).expect("checkpoint");
    let reopened = Engine::open(b.into_storage(), EngineConfig::new(2)).expect("reopen");
    assert_eq!(counts(&reopened), want, "from a checkpoint");
}

#[test]
fn type_conflict_greater_stamp_type_shows() {
    let mut a = site(1);
    let mut b = site(2);
    run(&mut a, 1000, "SET k str");
    run(&mut b, 2000, "SET k x");
    run(&mut b, 2000, "DEL k");
    let args: Vec<Bytes> = ["SADD", "k", "m"].iter().map(|s| Bytes::from(*s)).collect();
    b.execute(0, &args, 2100);
    let mut s = [a, b];
    exchange(&mut s);
    for e in s.iter_mut() {
        assert_eq!(run(e, 3000, "TYPE k"), Reply::Simple("set".into()));
        assert!(e.type_conflicts() <= 2);
    }
}

#[test]
fn duplicate_and_reordered_delivery_changes_nothing() {
    let mut a = site(1);
    let mut b = site(2);
    for i in 0..20 {
        run(&mut a, 1000 + i, &format!("INCRBY n {i}"));
        run(&mut a, 1000 + i, &format!("SET s{} v", i % 3));
    }
    let mut ops = a.ops_since(&VersionVector::new(), usize::MAX).unwrap();
    ops.reverse();
    let dup = ops.clone();
    b.apply_remote(ops);
    b.apply_remote(dup);
    assert_eq!(a.digest_hex(), b.digest_hex());
    assert_eq!(run(&mut b, 5000, "GET n"), bulk("190"));
}

#[test]
fn snapshot_merge_keeps_receivers_own_writes() {
    let mut a = site(1);
    let mut b = site(2);
    run(&mut a, 1000, "SET x 1");
    run(&mut a, 1000, "INCRBY n 5");
    run(&mut b, 1000, "SET y 2");
    run(&mut b, 1000, "INCRBY n 7");
    let snap = a.snapshot();
    b.merge_snapshot(snap);
    assert_eq!(run(&mut b, 2000, "GET x"), bulk("1"));
    assert_eq!(run(&mut b, 2000, "GET y"), bulk("2"));
    assert_eq!(run(&mut b, 2000, "GET n"), bulk("12"));
    let snap = b.snapshot();
    a.merge_snapshot(snap);
    assert_eq!(a.digest_hex(), b.digest_hex());
}

#[test]
fn multi_exec_is_one_atomic_op() {
    let mut a = site(1);
    let mut b = site(2);
    let cmds: Vec<(u8, Vec<Bytes>)> = ["SET a 1", "INCR c", "DEL a", "SET b 2"]
        .iter()
        .map(|c| {
            (
                0u8,
                c.split(' ')
                    .map(|s| Bytes::copy_from_slice(s.as_bytes()))
                    .collect(),
            )
        })
        .collect();
    let replies = a.execute_multi(&cmds, 1000);
    assert_eq!(
        replies,
        vec![Reply::Ok, Reply::Int(1), Reply::Int(1), Reply::Ok]
    );
    assert_eq!(a.last_local_seq(), 1);
    deliver(&mut a, &mut b);
    assert_eq!(run(&mut b, 2000, "EXISTS a"), Reply::Int(0));
    assert_eq!(run(&mut b, 2000, "GET b"), bulk("2"));
    assert_eq!(a.digest_hex(), b.digest_hex());
}

/// GEO writes are sorted-set score writes: GEOADD of one member at two sites
/// concurrently keeps the position of the greater stamp (ZADD's register
/// rule), GEOADD of different members keeps both, and a GEOADD concurrent
/// with a ZREM of the member keeps it (add wins).
#[test]
fn concurrent_geoadd_resolves_as_zadd() {
    let mut a = site(1);
    let b = site(2);
    run(
        &mut a,
        1000,
        "GEOADD g 13.361389 38.115556 shop 2.35 48.85 here",
    );
    let mut s = [a, b];
    exchange(&mut s);
    let [mut a, mut b] = s;
    run(&mut a, 2000, "GEOADD g 15.087269 37.502669 shop");
    run(&mut b, 3000, "GEOADD g -0.1276 51.5072 shop");
    run(&mut a, 2000, "GEOADD g 0 0 only_a");
    run(&mut b, 3000, "GEOADD g 1 1 only_b");
    run(&mut a, 2500, "ZREM g here");
    run(&mut b, 2500, "GEOADD g xx ch 2.36 48.86 here");
    let mut s = [a, b];
    exchange(&mut s);
    // The score GEOADD stores for the later write, read back as ZADD's.
    let mut fresh = site(9);
    run(
        &mut fresh,
        1,
        "GEOADD w -0.1276 51.5072 shop 2.36 48.86 here",
    );
    let later = run(&mut fresh, 2, "ZSCORE w shop");
    let moved = run(&mut fresh, 2, "GEOPOS w here");
    for e in s.iter_mut() {
        assert_eq!(run(e, 4000, "ZSCORE g shop"), later);
        assert_eq!(run(e, 4000, "GEOPOS g here"), moved);
        assert_eq!(run(e, 4000, "ZCARD g"), Reply::Int(4));
        assert_eq!(
            run(
                e,
                4000,
                "GEOSEARCH g FROMLONLAT 0.2 0.2 BYRADIUS 200 km ASC"
            ),
            Reply::Array(vec![bulk("only_a"), bulk("only_b")])
        );
    }
}

// ---- HyperLogLog ------------------------------------------------------------

/// Every register, as PFDEBUG GETREG gives them.
fn registers(e: &mut Engine, key: &str) -> Reply {
    run(e, 5000, &format!("PFDEBUG GETREG {key}"))
}

/// The registers of a fresh HLL holding `elements`, on a third site.
fn registers_of(elements: &str) -> Reply {
    let mut fresh = site(9);
    run(&mut fresh, 1000, &format!("PFADD x {elements}"));
    registers(&mut fresh, "x")
}

/// Two elements that fall in the same register with different ranks:
/// `(low, high)`.
fn same_register_pair() -> (String, String) {
    let first = "e0".to_string();
    let (reg, rank) = pat_len(first.as_bytes());
    for i in 1.. {
        let other = format!("e{i}");
        let (r, k) = pat_len(other.as_bytes());
        if r == reg && k != rank {
            return if k > rank {
                (first, other)
            } else {
                (other, first)
            };
        }
    }
    unreachable!()
}

#[test]
fn concurrent_pfadds_keep_every_register() {
    let mut sites = [site(1), site(2), site(3)];
    run(&mut sites[0], 1000, "PFADD h a b c");
    run(&mut sites[1], 1000, "PFADD h d e");
    run(&mut sites[2], 1000, "PFMERGE h");
    run(&mut sites[2], 1001, "PFADD h f");
    exchange(&mut sites);
    let want = registers_of("a b c d e f");
    for s in sites.iter_mut() {
        assert_eq!(run(s, 5000, "PFCOUNT h"), Reply::Int(6));
        assert_eq!(registers(s, "h"), want);
    }
    let get = run(&mut sites[0], 5000, "GET h");
    assert_eq!(run(&mut sites[1], 5000, "GET h"), get);
}

#[test]
fn pfadd_concurrent_with_del_keeps_the_unobserved_add() {
    let mut a = site(1);
    let mut b = site(2);
    run(&mut a, 1000, "PFADD h a");
    deliver(&mut a, &mut b);
    run(&mut b, 2000, "DEL h");
    run(&mut a, 2000, "PFADD h b");
    let mut sites = [a, b];
    exchange(&mut sites);
    let want = registers_of("b");
    for s in sites.iter_mut() {
        assert_eq!(run(s, 5000, "PFCOUNT h"), Reply::Int(1));
        assert_eq!(registers(s, "h"), want);
    }
}

#[test]
fn a_register_raised_again_is_not_brought_back_by_a_del_of_the_older_add() {
    // `low` and `high` raise one register; the PFADD of `high` had seen
    // `low`'s, so a DEL that saw only `low` removes `low` and leaves
    // `high`'s rank standing, at every site.
    let (low, high) = same_register_pair();
    let mut a = site(1);
    let mut b = site(2);
    run(&mut a, 1000, &format!("PFADD h {low}"));
    deliver(&mut a, &mut b);
    run(&mut a, 2000, &format!("PFADD h {high}"));
    run(&mut b, 2000, "DEL h");
    let mut sites = [a, b];
    exchange(&mut sites);
    let want = registers_of(&high);
    for s in sites.iter_mut() {
        assert_eq!(registers(s, "h"), want);
    }
    // And a DEL that had seen both removes both.
    run(&mut sites[0], 3000, "DEL h");
    exchange(&mut sites);
    for s in sites.iter_mut() {
        assert_eq!(run(s, 5000, "EXISTS h"), Reply::Int(0));
    }
}

#[test]
fn set_concurrent_with_pfadd_greater_stamp_shows() {
    for (set_at, pfadd_at, hll_shows) in [(1000, 2000, true), (2000, 1000, false)] {
        let mut a = site(1);
        let mut b = site(2);
        run(&mut a, set_at, "SET h plain");
        run(&mut b, pfadd_at, "PFADD h x y");
        let mut sites = [a, b];
        exchange(&mut sites);
        for s in sites.iter_mut() {
            if hll_shows {
                assert_eq!(run(s, 5000, "PFCOUNT h"), Reply::Int(2));
            } else {
                assert_eq!(run(s, 5000, "GET h"), bulk("plain"));
            }
            assert_eq!(run(s, 5000, "TYPE h"), Reply::Simple("string".into()));
        }
        // A write that saw both settles it: PFADD on the plain string is an
        // error, SET replaces the HLL.
        run(&mut sites[0], 6000, "SET h final");
        exchange(&mut sites);
        for s in sites.iter_mut() {
            assert_eq!(run(s, 7000, "GET h"), bulk("final"));
        }
    }
}

#[test]
fn hll_type_conflict_with_a_set_greater_stamp_shows() {
    let mut a = site(1);
    let mut b = site(2);
    run(&mut a, 1000, "SADD h m");
    run(&mut b, 2000, "PFADD h x");
    let mut sites = [a, b];
    exchange(&mut sites);
    for s in sites.iter_mut() {
        assert_eq!(run(s, 5000, "TYPE h"), Reply::Simple("string".into()));
        assert_eq!(run(s, 5000, "PFCOUNT h"), Reply::Int(1));
    }
}

#[test]
fn pfadd_on_a_copied_hll_string_keeps_its_registers() {
    let mut a = site(1);
    let mut b = site(2);
    run(&mut a, 1000, "PFADD src a b c");
    let Reply::Bulk(bytes) = run(&mut a, 1000, "GET src") else {
        panic!("GET of an HLL")
    };
    a.execute(
        0,
        &[Bytes::from("SET"), Bytes::from("h"), bytes.clone()],
        1001,
    );
    deliver(&mut a, &mut b);
    run(&mut a, 2000, "PFADD h d");
    run(&mut b, 2000, "PFADD h e");
    let mut sites = [a, b];
    exchange(&mut sites);
    let want = registers_of("a b c d e");
    for s in sites.iter_mut() {
        assert_eq!(registers(s, "h"), want);
    }
}

#[test]
fn hll_snapshot_merge_equals_op_delivery() {
    let (low, high) = same_register_pair();
    let make = || {
        let mut a = site(1);
        let mut b = site(2);
        run(&mut a, 1000, &format!("PFADD h {low} q"));
        deliver(&mut a, &mut b);
        run(&mut a, 2000, &format!("PFADD h {high}"));
        run(&mut b, 2000, "DEL h");
        run(&mut b, 2001, "PFADD h r");
        (a, b)
    };
    let (mut a, mut b) = make();
    let snap = a.snapshot();
    b.merge_snapshot(snap);
    let snap = b.snapshot();
    a.merge_snapshot(snap);
    let (x, y) = make();
    let mut ops = [x, y];
    exchange(&mut ops);
    assert_eq!(a.digest_hex(), b.digest_hex());
    assert_eq!(a.digest_hex(), ops[0].digest_hex());
    assert_eq!(registers(&mut a, "h"), registers(&mut ops[0], "h"));
    assert_eq!(registers(&mut a, "h"), registers_of(&format!("{high} r")));
}

#[test]
fn pfadd_on_a_string_that_hid_an_hll_forgets_the_hidden_registers() {
    let mut src = site(9);
    run(&mut src, 1000, "PFADD src b");
    let Reply::Bulk(bytes) = run(&mut src, 1000, "GET src") else {
        panic!("GET of an HLL")
    };
    let mut a = site(1);
    let mut b = site(2);
    run(&mut a, 1000, "PFADD h a");
    b.execute(0, &[Bytes::from("SET"), Bytes::from("h"), bytes], 2000);
    let mut sites = [a, b];
    exchange(&mut sites);
    assert_eq!(registers(&mut sites[0], "h"), registers_of("b"));
    run(&mut sites[0], 3000, "PFADD h c");
    exchange(&mut sites);
    let want = registers_of("b c");
    for s in sites.iter_mut() {
        assert_eq!(registers(s, "h"), want);
    }
}

#[test]
fn two_pfadds_of_one_multi_are_one_entry_and_sync_by_snapshot() {
    let mut a = site(1);
    let mut b = site(2);
    let cmds: Vec<(u8, Vec<Bytes>)> = ["PFADD h a", "PFADD h b c", "PFMERGE h"]
        .iter()
        .map(|c| {
            (
                0u8,
                c.split(' ')
                    .map(|s| Bytes::copy_from_slice(s.as_bytes()))
                    .collect(),
            )
        })
        .collect();
    a.execute_multi(&cmds, 1000);
    run(&mut b, 1000, "PFADD h d");
    let snap = a.snapshot();
    b.merge_snapshot(snap);
    let snap = b.snapshot();
    a.merge_snapshot(snap);
    assert_eq!(a.digest_hex(), b.digest_hex());
    let want = registers_of("a b c d");
    for s in [&mut a, &mut b] {
        assert_eq!(registers(s, "h"), want);
    }
    // The row's image decodes as a peer or a checkpoint reads it.
    for (_, _, img) in a.snapshot().rows {
        chorus_engine::keyspace::image::RowImage::decode(&img.encode()).expect("canonical image");
    }
}
