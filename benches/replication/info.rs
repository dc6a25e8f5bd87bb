//! The figures the benchmarks read from a site: `INFO replication` (version
//! vector, op counters, one line per peer) parsed into plain structs.

use std::collections::BTreeMap;
use std::io;

use crate::resp::Conn;

/// A version vector as INFO prints it: `{1:120,2.1:7}` (origin -> seq; an
/// origin is `site` or `site.incarnation`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vv(BTreeMap<String, u64>);

impl Vv {
    pub fn parse(s: &str) -> Option<Vv> {
        let inner = s.trim().strip_prefix('{')?.strip_suffix('}')?;
        let mut map = BTreeMap::new();
        for entry in inner.split(',').filter(|e| !e.is_empty()) {
            let (origin, seq) = entry.rsplit_once(':')?;
            map.insert(origin.to_string(), seq.parse().ok()?);
        }
        Some(Vv(map))
    }

    /// Ops this vector covers (the sum of its entries).
    pub fn ops(&self) -> u64 {
        self.0.values().sum()
    }

    /// Ops `self` covers that `other` does not.
    pub fn ahead_of(&self, other: &Vv) -> u64 {
        self.0
            .iter()
            .map(|(o, q)| q.saturating_sub(other.0.get(o).copied().unwrap_or(0)))
            .sum()
    }
}

/// One `peerN:` line.
#[derive(Clone, Debug, Default)]
pub struct Peer {
    pub id: u16,
    pub state: String,
    pub ops_lag: u64,
    pub time_lag_ms: u64,
    pub bytes_in_per_s: u64,
    pub bytes_out_per_s: u64,
    pub ops_sent: u64,
    pub ops_received: u64,
    /// Total bytes sent, when the server prints it (newer servers).
    pub bytes_out: Option<u64>,
}

/// The `# Replication` section of one site.
#[derive(Clone, Debug, Default)]
pub struct Replication {
    pub vv: Vv,
    pub ops_local: u64,
    pub ops_applied_remote: u64,
    pub peers: Vec<Peer>,
}

impl Replication {
    pub fn peer(&self, id: u16) -> Option<&Peer> {
        self.peers.iter().find(|p| p.id == id)
    }

    pub fn parse(text: &str) -> Replication {
        let mut r = Replication::default();
        for line in text.lines() {
            let Some((name, value)) = line.trim_end().split_once(':') else {
                continue;
            };
            let number = || value.parse::<u64>().unwrap_or(0);
            match name {
                "version_vector" => r.vv = Vv::parse(value).unwrap_or_default(),
                "ops_local" => r.ops_local = number(),
                "ops_applied_remote" => r.ops_applied_remote = number(),
                n if n.starts_with("peer") => r.peers.push(parse_peer(value)),
                _ => {}
            }
        }
        r
    }
}

fn parse_peer(value: &str) -> Peer {
    let mut p = Peer::default();
    for field in value.split(',') {
        let Some((k, v)) = field.split_once('=') else {
            continue;
        };
        let n = || v.parse::<u64>().unwrap_or(0);
        match k {
            "id" => p.id = v.parse().unwrap_or(0),
            "state" => p.state = v.to_string(),
            "ops_lag" => p.ops_lag = n(),
            "time_lag_ms" => p.time_lag_ms = n(),
            "bytes_in_per_s" => p.bytes_in_per_s = n(),
            "bytes_out_per_s" => p.bytes_out_per_s = n(),
            "ops_sent" => p.ops_sent = n(),
            "ops_received" => p.ops_received = n(),
            "bytes_out" => p.bytes_out = v.parse().ok(),
            _ => {}
        }
    }
    p
}

/// `INFO replication` of the site behind `conn`.
pub fn replication(conn: &mut Conn) -> io::Result<Replication> {
    let reply = conn.cmd(&["INFO", "replication"])?;
    let text = reply.text().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("INFO replication answered {reply:?}"),
        )
    })?;
    Ok(Replication::parse(&text))
}

/// `DEBUG DIGEST` of the site behind `conn`.
pub fn digest(conn: &mut Conn) -> io::Result<String> {
    let reply = conn.cmd(&["DEBUG", "DIGEST"])?;
    reply.text().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("DEBUG DIGEST answered {reply:?}"),
        )
    })
}
