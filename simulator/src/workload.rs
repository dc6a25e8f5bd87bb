//! The workload: typed client commands at random sites.
//!
//! Keys carry a type prefix (`s:` strings, `c:` counters, `f:` float counters,
//! `h:` hashes, `t:` sets, `z:` sorted sets, `l:` lists; list commands share
//! the sets' share of the mix) so most commands hit a key of their
//! own type; a few go to a key of another type on purpose, to exercise type
//! conflicts and WRONGTYPE. Commands the engine does not implement yet (checked
//! at run time with `Engine::is_data_command`) are replaced by string writes, so
//! the workload grows by itself as the hash, set and sorted-set commands land.

use crate::profile::Profile;
use crate::rng::Rng;
use bytes::Bytes;
use chorus_engine::Engine;

/// One client request: a single command or a MULTI/EXEC group.
#[derive(Clone, Debug)]
pub enum Request {
    One(u8, Vec<Bytes>),
    Multi(Vec<(u8, Vec<Bytes>)>),
}

impl Request {
    /// Commands in the request, for the trace.
    pub fn describe(&self) -> String {
        fn one(args: &[Bytes]) -> String {
            args.iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        }
        match self {
            Request::One(db, args) => format!("db{db} {}", one(args)),
            Request::Multi(cmds) => {
                let parts: Vec<String> = cmds
                    .iter()
                    .map(|(db, a)| format!("db{db} {}", one(a)))
                    .collect();
                format!("MULTI[{}]", parts.join("; "))
            }
        }
    }

    /// True when it may write (reads are not recorded as acked writes).
    pub fn may_write(&self) -> bool {
        match self {
            Request::One(_, args) => !is_read(args),
            Request::Multi(_) => true,
        }
    }
}

fn is_read(args: &[Bytes]) -> bool {
    matches!(
        args.first().map(|a| a.as_ref()),
        Some(
            b"GET"
                | b"HGETALL"
                | b"SMEMBERS"
                | b"ZRANGE"
                | b"GEOSEARCH"
                | b"PFCOUNT"
                | b"LRANGE"
                | b"TTL"
                | b"EXISTS"
                | b"TYPE"
        )
    )
}

pub struct Workload {
    rng: Rng,
    keys: u32,
    dbs: u8,
    weights: [u32; 12],
    has_hash: bool,
    has_set: bool,
    has_zset: bool,
    has_list: bool,
    has_hincrbyfloat: bool,
    has_hll: bool,
}

fn b(s: impl AsRef<[u8]>) -> Bytes {
    Bytes::copy_from_slice(s.as_ref())
}

impl Workload {
    pub fn new(seed: u64, p: &Profile) -> Workload {
        Workload {
            rng: Rng::stream(seed, "workload"),
            keys: p.keys.max(1),
            dbs: p.dbs.max(1),
            weights: p.mix.weights(),
            has_hash: Engine::is_data_command(b"HSET") && Engine::is_data_command(b"HDEL"),
            has_set: Engine::is_data_command(b"SADD") && Engine::is_data_command(b"SREM"),
            has_zset: Engine::is_data_command(b"ZADD") && Engine::is_data_command(b"ZREM"),
            has_list: Engine::is_data_command(b"RPUSH") && Engine::is_data_command(b"LPOP"),
            has_hincrbyfloat: Engine::is_data_command(b"HINCRBYFLOAT"),
            has_hll: Engine::is_data_command(b"PFADD") && Engine::is_data_command(b"PFMERGE"),
        }
    }

    /// Index of the site the next request goes to.
    pub fn pick_site(&mut self, sites: usize) -> usize {
        self.rng.below(sites as u64) as usize
    }

    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    fn db(&mut self) -> u8 {
        self.rng.below(self.dbs as u64) as u8
    }

    fn key(&mut self, prefix: &str) -> Bytes {
        // One key in ten is drawn from another type's names: type conflicts.
        let prefix = if self.rng.chance(0.1) {
            *self
                .rng
                .pick(&["s:", "c:", "f:", "h:", "t:", "z:", "l:", "p:"])
                .unwrap_or(&"s:")
        } else {
            prefix
        };
        let n = self.rng.below(self.keys as u64);
        b(format!("{prefix}{n}"))
    }

    fn small(&mut self, n: u64) -> Bytes {
        b(format!("{}", self.rng.below(n)))
    }

    fn value(&mut self) -> Bytes {
        let n = self.rng.below(1000);
        b(format!("v{n}"))
    }

    fn float_arg(&mut self) -> Bytes {
        let choices = ["1.5", "-0.25", "0.1", "3", "-2", "1e2", "0.0001", "-0"];
        b(self.rng.pick(&choices).unwrap_or(&"1"))
    }

    /// The next request.
    pub fn next_request(&mut self) -> Request {
        let family = self.rng.weighted(&self.weights);
        if family == 9 {
            let n = self.rng.range(2, 4);
            let cmds = (0..n)
                .map(|_| {
                    let f = self.rng.weighted(&self.weights[..9]);
                    let db = self.db();
                    (db, self.command(f))
                })
                .collect();
            return Request::Multi(cmds);
        }
        let db = self.db();
        Request::One(db, self.command(family))
    }

    fn command(&mut self, family: usize) -> Vec<Bytes> {
        match family {
            0 => self.string_cmd(),
            1 => self.counter_cmd(),
            2 => {
                let k = self.key("f:");
                let d = self.float_arg();
                vec![b("INCRBYFLOAT"), k, d]
            }
            3 if self.has_hash => self.hash_cmd(),
            4 if self.has_list && self.rng.chance(0.5) => self.list_cmd(),
            4 if self.has_set => self.set_cmd(),
            5 if self.has_zset => self.zset_cmd(),
            6 => {
                let k1 = self.any_key();
                if self.rng.chance(0.2) {
                    let k2 = self.any_key();
                    vec![b("DEL"), k1, k2]
                } else {
                    vec![b("DEL"), k1]
                }
            }
            7 => self.expire_cmd(),
            8 => {
                if self.rng.chance(0.2) {
                    vec![b("FLUSHALL")]
                } else {
                    vec![b("FLUSHDB")]
                }
            }
            10 => {
                let (k1, k2) = (self.any_key(), self.any_key());
                if self.rng.chance(0.5) {
                    vec![b("RENAME"), k1, k2]
                } else {
                    vec![b("COPY"), k1, k2, b("REPLACE")]
                }
            }
            11 => {
                let k = self.any_key();
                let name = *self
                    .rng
                    .pick(&["GET", "TTL", "EXISTS", "TYPE"])
                    .unwrap_or(&"GET");
                vec![b(name), k]
            }
            _ => self.string_cmd(),
        }
    }

    fn any_key(&mut self) -> Bytes {
        let p = *self
            .rng
            .pick(&["s:", "c:", "f:", "h:", "t:", "z:", "l:", "p:"])
            .unwrap_or(&"s:");
        self.key(p)
    }

    /// HyperLogLogs share the strings' share of the mix (they are strings
    /// to clients): PFADD of a few elements from a pool (so later adds
    /// sometimes raise a register and sometimes not), PFMERGE, PFCOUNT.
    fn hll_cmd(&mut self) -> Vec<Bytes> {
        let k = self.key("p:");
        match self.rng.below(8) {
            0..=4 => {
                let n = self.rng.range(1, 4);
                let mut c = vec![b("PFADD"), k];
                c.extend((0..n).map(|_| b(format!("e{}", self.rng.below(3000)))));
                c
            }
            5 => vec![b("PFADD"), k],
            6 => {
                let k2 = self.key("p:");
                vec![b("PFMERGE"), k, k2]
            }
            _ => {
                let k2 = self.key("p:");
                vec![b("PFCOUNT"), k, k2]
            }
        }
    }

    fn string_cmd(&mut self) -> Vec<Bytes> {
        if self.has_hll && self.rng.chance(0.3) {
            return self.hll_cmd();
        }
        let k = self.key("s:");
        let v = self.value();
        match self.rng.below(8) {
            0 => vec![b("APPEND"), k, v],
            1 => vec![b("GETSET"), k, v],
            2 => {
                let off = self.small(8);
                vec![b("SETRANGE"), k, off, v]
            }
            3 => {
                let ms = self.rng.range(50, 8000);
                vec![b("SET"), k, v, b("PX"), b(ms.to_string())]
            }
            4 => vec![b("SET"), k, v, b("KEEPTTL")],
            5 => vec![b("SETNX"), k, v],
            _ => vec![b("SET"), k, v],
        }
    }

    fn counter_cmd(&mut self) -> Vec<Bytes> {
        let k = self.key("c:");
        match self.rng.below(6) {
            0 => vec![b("INCR"), k],
            1 => vec![b("DECR"), k],
            2 => {
                let d = self.rng.range(0, 200) as i64 - 100;
                vec![b("INCRBY"), k, b(d.to_string())]
            }
            3 => {
                let d = self.rng.range(1, 50);
                vec![b("DECRBY"), k, b(d.to_string())]
            }
            4 => {
                // Resets the base: concurrent increments survive on top.
                let v = self.rng.range(0, 100);
                vec![b("SET"), k, b(v.to_string())]
            }
            _ => vec![b("INCR"), k],
        }
    }

    fn hash_cmd(&mut self) -> Vec<Bytes> {
        let k = self.key("h:");
        let f = b(format!("f{}", self.rng.below(6)));
        match self.rng.below(6) {
            0 | 1 => {
                let v = self.value();
                if self.rng.chance(0.3) {
                    let f2 = b(format!("f{}", self.rng.below(6)));
                    let v2 = self.value();
                    vec![b("HSET"), k, f, v, f2, v2]
                } else {
                    vec![b("HSET"), k, f, v]
                }
            }
            2 => vec![b("HDEL"), k, f],
            3 if Engine::is_data_command(b"HINCRBY") => {
                let d = self.rng.range(0, 20) as i64 - 10;
                vec![b("HINCRBY"), k, f, b(d.to_string())]
            }
            4 if self.has_hincrbyfloat => {
                let d = self.float_arg();
                vec![b("HINCRBYFLOAT"), k, f, d]
            }
            _ => {
                let v = self.value();
                vec![b("HSET"), k, f, v]
            }
        }
    }

    fn set_cmd(&mut self) -> Vec<Bytes> {
        let k = self.key("t:");
        let m = b(format!("m{}", self.rng.below(8)));
        if self.rng.chance(0.35) {
            vec![b("SREM"), k, m]
        } else if self.rng.chance(0.3) {
            let m2 = b(format!("m{}", self.rng.below(8)));
            vec![b("SADD"), k, m, m2]
        } else {
            vec![b("SADD"), k, m]
        }
    }

    /// Every list command, the blocking ones included (in the engine they
    /// make their one attempt and never wait).
    fn list_cmd(&mut self) -> Vec<Bytes> {
        let k = self.key("l:");
        let v = self.value();
        match self.rng.below(16) {
            0..=2 => {
                let n = self.rng.range(1, 4);
                let mut c = vec![b("RPUSH"), k];
                c.extend((0..n).map(|_| self.value()));
                c
            }
            3 | 4 => {
                let n = self.rng.range(1, 4);
                let mut c = vec![b("LPUSH"), k];
                c.extend((0..n).map(|_| self.value()));
                c
            }
            5 => vec![
                b(*self.rng.pick(&["LPUSHX", "RPUSHX"]).unwrap_or(&"LPUSHX")),
                k,
                v,
            ],
            6 => vec![b("LPOP"), k],
            7 => {
                let n = self.small(3);
                vec![b("RPOP"), k, n]
            }
            8 => {
                let pivot = self.value();
                let side = *self.rng.pick(&["BEFORE", "AFTER"]).unwrap_or(&"BEFORE");
                vec![b("LINSERT"), k, b(side), pivot, v]
            }
            9 => {
                let n = self.rng.range(0, 5) as i64 - 2;
                vec![b("LREM"), k, b(n.to_string()), v]
            }
            10 => {
                let (s, e) = (self.rng.range(0, 3) as i64, self.rng.range(0, 4) as i64 - 2);
                vec![b("LTRIM"), k, b(s.to_string()), b(e.to_string())]
            }
            11 => {
                let i = self.rng.range(0, 6) as i64 - 3;
                vec![b("LSET"), k, b(i.to_string()), v]
            }
            12 => {
                let dst = self.key("l:");
                let from = *self.rng.pick(&["LEFT", "RIGHT"]).unwrap_or(&"LEFT");
                let to = *self.rng.pick(&["LEFT", "RIGHT"]).unwrap_or(&"LEFT");
                vec![b("LMOVE"), k, dst, b(from), b(to)]
            }
            13 => {
                let k2 = self.key("l:");
                vec![b("LMPOP"), b("2"), k, k2, b("RIGHT"), b("COUNT"), b("2")]
            }
            14 => vec![b("BLPOP"), k, b("0")],
            _ => vec![b("LRANGE"), k, b("0"), b("-1")],
        }
    }

    fn zset_cmd(&mut self) -> Vec<Bytes> {
        let k = self.key("z:");
        let m = b(format!("m{}", self.rng.below(8)));
        match self.rng.below(7) {
            0 => vec![b("ZREM"), k, m],
            1 if Engine::is_data_command(b"ZINCRBY") => {
                let d = self.float_arg();
                vec![b("ZINCRBY"), k, d, m]
            }
            // GEO writes are ZADDs of a geohash score; the search reads.
            5 if Engine::is_data_command(b"GEOADD") => {
                let (lon, lat) = (
                    self.rng.range(0, 360) as i64 - 180,
                    self.rng.range(0, 170) as i64 - 85,
                );
                vec![b("GEOADD"), k, b(lon.to_string()), b(lat.to_string()), m]
            }
            6 if Engine::is_data_command(b"GEOSEARCH") => {
                let r = self.rng.range(1, 20000);
                let dir = *self.rng.pick(&["ASC", "DESC"]).unwrap_or(&"ASC");
                vec![
                    b("GEOSEARCH"),
                    k,
                    b("FROMLONLAT"),
                    b("0"),
                    b("0"),
                    b("BYRADIUS"),
                    b(r.to_string()),
                    b("km"),
                    b(dir),
                ]
            }
            _ => {
                let s = self.rng.range(0, 100);
                vec![b("ZADD"), k, b(s.to_string()), m]
            }
        }
    }

    fn expire_cmd(&mut self) -> Vec<Bytes> {
        let k = self.any_key();
        match self.rng.below(6) {
            0 => vec![b("PERSIST"), k],
            1 => {
                let s = self.rng.range(1, 20);
                vec![b("EXPIRE"), k, b(s.to_string())]
            }
            2 => {
                let s = self.rng.range(1, 20);
                let opt = *self.rng.pick(&["NX", "XX", "GT", "LT"]).unwrap_or(&"NX");
                vec![b("EXPIRE"), k, b(s.to_string()), b(opt)]
            }
            _ => {
                let ms = self.rng.range(20, 6000);
                vec![b("PEXPIRE"), k, b(ms.to_string())]
            }
        }
    }
}
