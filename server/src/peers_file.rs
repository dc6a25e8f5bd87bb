//! Runtime peer changes (`PEER ADD`, `PEER REMOVE`) kept in the data
//! directory, so they survive a restart.
//!
//! The file `DIR/peers.conf` records, per site id, the last runtime change:
//! `add ID HOST:PORT` or `remove ID`. At start the `--peer` flags come
//! first and the file's changes are applied over them (a runtime change is
//! newer than the command line): `add` adds the peer or changes its
//! address, `remove` drops it even if a flag names it. Deleting the file
//! (with the site stopped) goes back to the flags alone.
//!
//! Writes are atomic: a temporary file is written and fsynced, renamed over
//! the old one, and the directory fsynced; a crash leaves the old or the new
//! list, never a mix. A damaged file stops the start with its path, line
//! and what is wrong; nothing here panics on its content.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// The file's name inside the data directory.
pub const PEERS_FILE_NAME: &str = "peers.conf";
/// First line of the file: the format and its version.
pub const PEERS_FILE_HEADER: &str = "chorus-peers 1";
/// Largest file read (a full list of 65535 sites is ~2.5 MiB).
pub const PEERS_FILE_BYTES_MAX: u64 = 4 << 20;

/// The last runtime change of one peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerChange {
    Add(SocketAddr),
    Remove,
}

#[derive(Debug, Error)]
pub enum PeersFileError {
    #[error("can't read the peer list {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the peer list {path} is larger than {PEERS_FILE_BYTES_MAX} bytes: damaged? (move it away to start with the --peer flags alone)")]
    TooLarge { path: PathBuf },
    #[error("the peer list {path} is damaged at line {line}: {reason} (fix or move it away to start with the --peer flags alone)")]
    Corrupt {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("can't save the peer list {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The runtime peer changes of this site, in memory and on disk.
#[derive(Debug)]
pub struct PeerOverrides {
    path: PathBuf,
    changes: BTreeMap<u16, PeerChange>,
}

impl PeerOverrides {
    /// Reads `dir/peers.conf`; no file means no changes.
    pub fn load(dir: &Path) -> Result<PeerOverrides, PeersFileError> {
        let path = dir.join(PEERS_FILE_NAME);
        let read_err = |source| PeersFileError::Read {
            path: path.clone(),
            source,
        };
        let text = match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(PeerOverrides {
                    path,
                    changes: BTreeMap::new(),
                })
            }
            Err(e) => return Err(read_err(e)),
            Ok(m) if m.len() > PEERS_FILE_BYTES_MAX => {
                return Err(PeersFileError::TooLarge { path })
            }
            Ok(_) => std::fs::read(&path).map_err(read_err)?,
        };
        let changes = parse(&text).map_err(|(line, reason)| PeersFileError::Corrupt {
            path: path.clone(),
            line,
            reason,
        })?;
        Ok(PeerOverrides { path, changes })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn changes(&self) -> &BTreeMap<u16, PeerChange> {
        &self.changes
    }

    /// The peers to start with: `flags`, then the runtime changes over them.
    /// Each change that overrides a flag is logged.
    pub fn apply(&self, flags: &[(u16, SocketAddr)]) -> Vec<(u16, SocketAddr)> {
        let mut peers: BTreeMap<u16, SocketAddr> = flags.iter().copied().collect();
        for (&id, change) in &self.changes {
            let flagged = peers.get(&id).copied();
            match *change {
                PeerChange::Add(addr) => {
                    if flagged.is_some_and(|f| f != addr) {
                        tracing::warn!(peer = id, %addr, path = %self.path.display(), "peer address from --peer replaced by a runtime PEER ADD");
                    }
                    peers.insert(id, addr);
                }
                PeerChange::Remove => {
                    if flagged.is_some() {
                        tracing::warn!(peer = id, path = %self.path.display(), "peer from --peer left out: removed at runtime by PEER REMOVE");
                    }
                    peers.remove(&id);
                }
            }
        }
        peers.into_iter().collect()
    }

    /// Records `PEER ADD id addr` and saves the file.
    pub fn record_add(&mut self, id: u16, addr: SocketAddr) -> Result<(), PeersFileError> {
        self.record(id, PeerChange::Add(addr))
    }

    /// Records `PEER REMOVE id` and saves the file.
    pub fn record_remove(&mut self, id: u16) -> Result<(), PeersFileError> {
        self.record(id, PeerChange::Remove)
    }

    fn record(&mut self, id: u16, change: PeerChange) -> Result<(), PeersFileError> {
        let mut next = self.changes.clone();
        next.insert(id, change);
        write_atomically(&self.path, render(&next).as_bytes()).map_err(|source| {
            PeersFileError::Write {
                path: self.path.clone(),
                source,
            }
        })?;
        self.changes = next;
        Ok(())
    }
}

fn render(changes: &BTreeMap<u16, PeerChange>) -> String {
    let mut text = format!(
        "{PEERS_FILE_HEADER}\n# Runtime PEER ADD / PEER REMOVE of this site, applied over --peer at start.\n# Written by chorus-server; delete it (site stopped) to use the --peer flags alone.\n"
    );
    for (id, change) in changes {
        match change {
            PeerChange::Add(addr) => text.push_str(&format!("add {id} {addr}\n")),
            PeerChange::Remove => text.push_str(&format!("remove {id}\n")),
        }
    }
    text
}

/// Parses the file; the error is `(line, reason)`.
fn parse(bytes: &[u8]) -> Result<BTreeMap<u16, PeerChange>, (usize, String)> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes
            .get(..e.valid_up_to())
            .map_or(1, |ok| ok.iter().filter(|&&b| b == b'\n').count() + 1);
        (line, "not UTF-8 text".to_string())
    })?;
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim()));
    match lines.next() {
        Some((_, PEERS_FILE_HEADER)) => {}
        Some((n, other)) => {
            return Err((
                n,
                format!("expected '{PEERS_FILE_HEADER}', found '{other}'"),
            ))
        }
        None => return Err((1, format!("empty file (expected '{PEERS_FILE_HEADER}')"))),
    }
    let mut changes = BTreeMap::new();
    for (n, line) in lines {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let id = |w: &str| -> Result<u16, (usize, String)> {
            w.parse::<u16>()
                .ok()
                .filter(|&id| id > 0)
                .ok_or_else(|| (n, format!("bad site id '{w}'")))
        };
        let change = match words.as_slice() {
            ["add", site, addr] => {
                let addr = addr
                    .parse::<SocketAddr>()
                    .map_err(|_| (n, format!("bad address '{addr}' (want IP:PORT)")))?;
                (id(site)?, PeerChange::Add(addr))
            }
            ["remove", site] => (id(site)?, PeerChange::Remove),
            _ => {
                return Err((
                    n,
                    format!("expected 'add ID IP:PORT' or 'remove ID', found '{line}'"),
                ))
            }
        };
        changes.insert(change.0, change.1);
    }
    Ok(changes)
}

/// Writes `path` so that a crash leaves either the old or the new content.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("conf.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn changes_survive_a_reload_and_apply_over_the_flags() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = PeerOverrides::load(dir.path()).unwrap();
        assert!(o.changes().is_empty());
        o.record_add(3, addr("127.0.0.1:7003")).unwrap();
        o.record_remove(2).unwrap();
        o.record_add(4, addr("[::1]:7004")).unwrap();
        o.record_remove(4).unwrap();
        let o = PeerOverrides::load(dir.path()).unwrap();
        let flags = [(2, addr("127.0.0.1:7002")), (5, addr("127.0.0.1:7005"))];
        assert_eq!(
            o.apply(&flags),
            vec![(3, addr("127.0.0.1:7003")), (5, addr("127.0.0.1:7005"))]
        );
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec![PEERS_FILE_NAME.to_string()]);
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_the_line_never_a_panic() {
        let cases: &[(&[u8], usize)] = &[
            (b"", 1),
            (b"something else\n", 1),
            (b"chorus-peers 1\nadd 0 127.0.0.1:1\n", 2),
            (b"chorus-peers 1\n# ok\nadd 2 nowhere\n", 3),
            (b"chorus-peers 1\nremove 70000\n", 2),
            (b"chorus-peers 1\ndrop 2\n", 2),
            (b"chorus-peers 1\nadd 2 127.0.0.1:1\n\xff\xfe\n", 3),
        ];
        for (content, want_line) in cases {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(PEERS_FILE_NAME), content).unwrap();
            match PeerOverrides::load(dir.path()) {
                Err(PeersFileError::Corrupt { line, .. }) => {
                    assert_eq!(line, *want_line, "{:?}", String::from_utf8_lossy(content))
                }
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(content)),
            }
        }
    }
}
