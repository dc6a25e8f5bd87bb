//! Units: named sets of keys (a key prefix each) that are either shared
//! (any site writes, the CRDT rules merge) or owned by one home site (only
//! the home accepts writes; the others redirect).
//!
//! Definitions are cluster data (rows of [`CLUSTER_DB`]), so they
//! replicate, persist, travel in snapshots and are compared by
//! anti-entropy like any data:
//! - hash `units`: unit name → key prefix;
//! - hash `unit_owners`: unit name → `shared` or the home's site id;
//! - hash `site_addrs`: site id → the `host:port` its clients use (what a
//!   redirect names).
//!
//! Each field is a register: concurrent definitions of one name resolve
//! to one everywhere (the greater stamp), and `UNIT DROP` removes what it
//! saw. The **longest** matching prefix decides a key's unit (equal
//! prefixes: the smaller name), so the answer does not depend on the order
//! in which definitions arrived. Keys of no unit are in the default unit
//! `*`, shared.
//!
//! The table is read from the rows once per change of the cluster's
//! database and kept; a write checks its keys against it only when some
//! unit is owned (see docs/semantics.md, "Units").

use super::Engine;
use crate::id::SiteId;
use crate::keyspace::CLUSTER_DB;
use crate::reply::Reply;
use bytes::Bytes;
use std::collections::BTreeMap;

/// The hash of unit name → key prefix.
pub const UNITS_KEY: &[u8] = b"units";
/// The hash of unit name → `shared` or the home's site id.
pub const OWNERS_KEY: &[u8] = b"unit_owners";
/// The hash of site id → client address (`host:port`).
pub const ADDRS_KEY: &[u8] = b"site_addrs";

/// Longest unit name and prefix accepted (they are written into every
/// redirect and kept in memory at every site).
pub const UNIT_NAME_MAX: usize = 128;
pub const UNIT_PREFIX_MAX: usize = 1024;
/// Most units a cluster may define (each write to an owned unit's key
/// looks through them).
pub const UNITS_MAX: usize = 4096;

/// Who may write a unit's keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Any site; concurrent writes merge by the CRDT rules.
    Shared,
    /// Only the home site.
    Owned(SiteId),
}

impl Mode {
    fn parse(b: &[u8]) -> Option<Mode> {
        if b.eq_ignore_ascii_case(b"shared") {
            return Some(Mode::Shared);
        }
        std::str::from_utf8(b)
            .ok()?
            .parse::<SiteId>()
            .ok()
            .filter(|&s| s != 0)
            .map(Mode::Owned)
    }

    fn encode(self) -> Bytes {
        match self {
            Mode::Shared => Bytes::from_static(b"shared"),
            Mode::Owned(s) => Bytes::from(s.to_string()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    pub name: Bytes,
    pub prefix: Bytes,
    pub mode: Mode,
}

/// Every unit, longest prefix first (equal prefixes: smaller name first),
/// and the sites' client addresses.
#[derive(Clone, Debug, Default)]
pub struct UnitTable {
    pub units: Vec<Unit>,
    pub addrs: BTreeMap<SiteId, String>,
    /// Some unit is owned: writes must look their keys up.
    owned: bool,
}

impl UnitTable {
    /// Orders `units` longest prefix first (equal prefixes: smaller name).
    pub fn new(mut units: Vec<Unit>, addrs: BTreeMap<SiteId, String>) -> UnitTable {
        units.sort_by(|a, b| {
            b.prefix
                .len()
                .cmp(&a.prefix.len())
                .then_with(|| a.name.cmp(&b.name))
        });
        let owned = units.iter().any(|u| matches!(u.mode, Mode::Owned(_)));
        UnitTable {
            units,
            addrs,
            owned,
        }
    }

    /// The unit of `key`: the one with the longest matching prefix.
    pub fn unit_of(&self, key: &[u8]) -> Option<&Unit> {
        self.units.iter().find(|u| key.starts_with(&u.prefix))
    }

    pub fn get(&self, name: &[u8]) -> Option<&Unit> {
        self.units.iter().find(|u| u.name == name)
    }

    /// True when some unit is owned by a site (writes check their keys).
    pub fn any_owned(&self) -> bool {
        self.owned
    }

    /// The address clients of `site` use, as a redirect names it.
    pub fn addr_of(&self, site: SiteId) -> &str {
        self.addrs.get(&site).map_or("?:0", String::as_str)
    }

    /// Where a write to `keys` may run, seen from site `me`: `Ok` here,
    /// or the error to answer (`REDIRECT` to the one home the keys need,
    /// `CROSSUNIT` when they need two).
    pub fn route<'k>(
        &self,
        me: SiteId,
        keys: impl IntoIterator<Item = &'k [u8]>,
    ) -> Result<(), Reply> {
        if !self.owned {
            return Ok(());
        }
        let mut home: Option<(&Unit, SiteId)> = None;
        for key in keys {
            let Some(u) = self.unit_of(key) else { continue };
            let Mode::Owned(site) = u.mode else { continue };
            match home {
                Some((first, h)) if h != site => {
                    return Err(Reply::Error(format!(
                        "CROSSUNIT the keys belong to units with different homes: '{}' (site {h}) and '{}' (site {site})",
                        String::from_utf8_lossy(&first.name),
                        String::from_utf8_lossy(&u.name),
                    )));
                }
                Some(_) => {}
                None => home = Some((u, site)),
            }
        }
        match home {
            Some((u, site)) if site != me => Err(self.redirect(u, site)),
            _ => Ok(()),
        }
    }

    /// `REDIRECT <unit> <home-site-id> <host>:<port>`.
    pub fn redirect(&self, u: &Unit, home: SiteId) -> Reply {
        Reply::Error(format!(
            "REDIRECT {} {home} {}",
            String::from_utf8_lossy(&u.name),
            self.addr_of(home)
        ))
    }
}

/// What a unit command could not do.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnitError {
    #[error("ERR unit name must be 1 to {UNIT_NAME_MAX} bytes, without spaces")]
    BadName,
    #[error("ERR unit '*' is the default unit and cannot be defined or dropped")]
    Default,
    #[error("ERR unit prefix must be 1 to {UNIT_PREFIX_MAX} bytes")]
    BadPrefix,
    #[error("ERR no such unit")]
    NoSuchUnit,
    #[error("ERR owner must be a site id in 1..65535 or SHARED")]
    BadOwner,
    #[error("ERR site {0} is not a member of the cluster (MEMBER LIST)")]
    NotMember(SiteId),
    #[error("ERR too many units (at most {UNITS_MAX})")]
    TooMany,
    #[error("{0}")]
    Write(String),
}

fn valid_name(name: &[u8]) -> Result<(), UnitError> {
    if name == b"*" {
        return Err(UnitError::Default);
    }
    if name.is_empty()
        || name.len() > UNIT_NAME_MAX
        || name
            .iter()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(UnitError::BadName);
    }
    Ok(())
}

/// Unit state of this site that is not cluster data.
#[derive(Debug, Default)]
pub(crate) struct UnitState {
    table: UnitTable,
    /// The cluster database's change count the table was read at.
    read_at: Option<u64>,
    /// Units this site is handing to another home (planned failover):
    /// their writes are refused here with `TRYAGAIN` meanwhile.
    pub handing_over: BTreeMap<Bytes, SiteId>,
}

impl Engine {
    /// The unit table, read again from the cluster's rows if they changed.
    pub fn units(&mut self) -> &UnitTable {
        let changes = self.keyspace.db(CLUSTER_DB).digest.changes();
        if self.units.read_at != Some(changes) {
            self.units.table = self.read_units();
            self.units.read_at = Some(changes);
        }
        &self.units.table
    }

    fn read_units(&self) -> UnitTable {
        let rows = &self.keyspace.db(CLUSTER_DB).rows;
        let hash = |key: &[u8]| -> Vec<(Bytes, Bytes)> {
            rows.get(key)
                .filter(|r| r.kind() == Some(crate::keyspace::value::Kind::Hash))
                .and_then(|r| r.hash.as_deref())
                .map(|h| {
                    h.fields
                        .iter()
                        .filter_map(|(f, c)| c.value().map(|v| (f.clone(), v)))
                        .collect()
                })
                .unwrap_or_default()
        };
        let prefixes = hash(UNITS_KEY);
        let owners: BTreeMap<Bytes, Mode> = hash(OWNERS_KEY)
            .into_iter()
            .filter_map(|(n, m)| Some((n, Mode::parse(&m)?)))
            .collect();
        let addrs = hash(ADDRS_KEY)
            .into_iter()
            .filter_map(|(s, a)| {
                let site = std::str::from_utf8(&s).ok()?.parse::<SiteId>().ok()?;
                Some((site, String::from_utf8_lossy(&a).into_owned()))
            })
            .collect();
        let units: Vec<Unit> = prefixes
            .into_iter()
            .filter(|(name, prefix)| valid_name(name).is_ok() && !prefix.is_empty())
            .map(|(name, prefix)| Unit {
                mode: owners.get(&name).copied().unwrap_or(Mode::Shared),
                name,
                prefix,
            })
            .collect();
        UnitTable::new(units, addrs)
    }

    /// One op of the cluster's database (a hash write), refused as any
    /// write is (a site catching up may not write its cluster data either).
    fn cluster_hash(&mut self, args: Vec<Bytes>, now_ms: u64) -> Result<(), UnitError> {
        match self.execute(CLUSTER_DB, &args, now_ms) {
            Reply::Error(e) => Err(UnitError::Write(e.to_string())),
            _ => Ok(()),
        }
    }

    /// `UNIT DEFINE name PREFIX prefix` (a new unit is shared).
    pub fn unit_define(
        &mut self,
        name: &Bytes,
        prefix: &Bytes,
        now_ms: u64,
    ) -> Result<(), UnitError> {
        valid_name(name)?;
        if prefix.is_empty() || prefix.len() > UNIT_PREFIX_MAX {
            return Err(UnitError::BadPrefix);
        }
        let t = self.units();
        if t.get(name).is_none() && t.units.len() >= UNITS_MAX {
            return Err(UnitError::TooMany);
        }
        let args = vec![
            Bytes::from_static(b"HSET"),
            Bytes::from_static(UNITS_KEY),
            name.clone(),
            prefix.clone(),
        ];
        self.cluster_hash(args, now_ms)?;
        tracing::info!(unit = %String::from_utf8_lossy(name), prefix = %String::from_utf8_lossy(prefix), "unit defined");
        Ok(())
    }

    /// `UNIT OWNER name site|SHARED`: at once, at this site (no hand-over:
    /// see [`Engine::unit_begin_handover`] for a planned failover).
    pub fn unit_set_owner(
        &mut self,
        name: &Bytes,
        mode: &[u8],
        now_ms: u64,
    ) -> Result<(), UnitError> {
        let mode = Mode::parse(mode).ok_or(UnitError::BadOwner)?;
        if self.units().get(name).is_none() {
            return Err(UnitError::NoSuchUnit);
        }
        if let Mode::Owned(site) = mode {
            if site != self.config.site_id && !self.membership().is_active(site) {
                return Err(UnitError::NotMember(site));
            }
        }
        let args = vec![
            Bytes::from_static(b"HSET"),
            Bytes::from_static(OWNERS_KEY),
            name.clone(),
            mode.encode(),
        ];
        self.cluster_hash(args, now_ms)?;
        self.units.handing_over.remove(name);
        tracing::warn!(unit = %String::from_utf8_lossy(name), ?mode, "unit owner set");
        Ok(())
    }

    /// `UNIT DROP name`: its keys fall back to the next matching unit.
    pub fn unit_drop(&mut self, name: &Bytes, now_ms: u64) -> Result<(), UnitError> {
        valid_name(name)?;
        if self.units().get(name).is_none() {
            return Err(UnitError::NoSuchUnit);
        }
        for key in [UNITS_KEY, OWNERS_KEY] {
            let args = vec![
                Bytes::from_static(b"HDEL"),
                Bytes::from_static(key),
                name.clone(),
            ];
            self.cluster_hash(args, now_ms)?;
        }
        self.units.handing_over.remove(name);
        tracing::info!(unit = %String::from_utf8_lossy(name), "unit dropped");
        Ok(())
    }

    /// Records the address this site's clients use, if it changed.
    pub fn announce_addr(&mut self, addr: &str, now_ms: u64) -> Result<(), UnitError> {
        let me = self.config.site_id;
        if self.units().addrs.get(&me).is_some_and(|a| a == addr) {
            return Ok(());
        }
        let args = vec![
            Bytes::from_static(b"HSET"),
            Bytes::from_static(ADDRS_KEY),
            Bytes::from(me.to_string()),
            Bytes::from(addr.to_owned()),
        ];
        // An address is no counter: a site catching up records it too.
        let fenced = std::mem::replace(&mut self.catching_up, false);
        let target = self.catch_up_to.take();
        let done = self.cluster_hash(args, now_ms);
        self.catching_up = fenced;
        self.catch_up_to = target;
        done
    }

    /// Starts a planned failover of `name` from this site (its home) to
    /// `to`: writes to the unit are refused here (`TRYAGAIN`) until
    /// [`Engine::unit_finish_handover`] or [`Engine::unit_abort_handover`].
    pub fn unit_begin_handover(&mut self, name: &Bytes, to: SiteId) -> Result<(), Reply> {
        let me = self.config.site_id;
        let t = self.units();
        let Some(u) = t.get(name) else {
            return Err(Reply::err(UnitError::NoSuchUnit.to_string()));
        };
        match u.mode {
            Mode::Shared => return Err(Reply::err(
                "ERR the unit is shared: every site takes its writes (UNIT OWNER gives it a home)",
            )),
            Mode::Owned(h) if h != me => return Err(t.redirect(u, h)),
            Mode::Owned(_) if to == me => {
                return Err(Reply::err("ERR this site is already the unit's home"))
            }
            Mode::Owned(_) => {}
        }
        if !self.membership().is_active(to) {
            return Err(Reply::err(UnitError::NotMember(to).to_string()));
        }
        self.units.handing_over.insert(name.clone(), to);
        tracing::warn!(unit = %String::from_utf8_lossy(name), to, "planned failover: writes to the unit paused here");
        Ok(())
    }

    /// Ends a planned failover: the new home is recorded (an op that
    /// replicates), and this site redirects from now on.
    pub fn unit_finish_handover(&mut self, name: &Bytes, now_ms: u64) -> Result<(), UnitError> {
        let Some(to) = self.units.handing_over.get(name).copied() else {
            return Err(UnitError::NoSuchUnit);
        };
        let args = vec![
            Bytes::from_static(b"HSET"),
            Bytes::from_static(OWNERS_KEY),
            name.clone(),
            Mode::Owned(to).encode(),
        ];
        let done = self.cluster_hash(args, now_ms);
        self.units.handing_over.remove(name);
        if done.is_ok() {
            tracing::warn!(unit = %String::from_utf8_lossy(name), to, "planned failover done: the unit's home moved");
        }
        done
    }

    /// Gives a unit back to this site after a failed hand-over.
    pub fn unit_abort_handover(&mut self, name: &Bytes) {
        if self.units.handing_over.remove(name).is_some() {
            tracing::warn!(unit = %String::from_utf8_lossy(name), "planned failover abandoned: writes to the unit resume here");
        }
    }

    /// The unit this site is handing over, if `name` is one.
    pub fn unit_handing_over(&self, name: &[u8]) -> Option<SiteId> {
        self.units.handing_over.get(name).copied()
    }

    /// Where a local write to `keys` may run (see [`UnitTable::route`]),
    /// with `TRYAGAIN` for a unit this site is handing over.
    pub fn unit_route(&mut self, keys: &[&[u8]]) -> Result<(), Reply> {
        let me = self.config.site_id;
        let handing = !self.units.handing_over.is_empty();
        let t = self.units();
        if !t.any_owned() {
            return Ok(());
        }
        t.route(me, keys.iter().copied())?;
        if handing {
            for key in keys {
                if let Some(u) = self.units.table.unit_of(key) {
                    if let Some(to) = self.units.handing_over.get(&u.name) {
                        return Err(Reply::Error(format!(
                            "TRYAGAIN unit '{}' is moving to site {to}; retry shortly",
                            String::from_utf8_lossy(&u.name)
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(units: &[(&str, &str, Mode)]) -> UnitTable {
        let units: Vec<Unit> = units
            .iter()
            .map(|(n, p, m)| Unit {
                name: Bytes::copy_from_slice(n.as_bytes()),
                prefix: Bytes::copy_from_slice(p.as_bytes()),
                mode: *m,
            })
            .collect();
        UnitTable::new(units, [(2, "10.0.0.2:6379".to_string())].into())
    }

    #[test]
    fn the_longest_prefix_decides_and_ties_go_to_the_smaller_name() {
        let t = table(&[
            ("users", "user:", Mode::Owned(1)),
            ("vip", "user:vip:", Mode::Owned(2)),
            ("b", "same:", Mode::Shared),
            ("a", "same:", Mode::Owned(1)),
        ]);
        assert_eq!(&t.unit_of(b"user:vip:7").unwrap().name[..], b"vip");
        assert_eq!(&t.unit_of(b"user:7").unwrap().name[..], b"users");
        assert_eq!(&t.unit_of(b"same:x").unwrap().name[..], b"a");
        assert!(t.unit_of(b"other").is_none());
    }

    #[test]
    fn writes_run_at_the_home_redirect_elsewhere_and_refuse_two_homes() {
        let t = table(&[
            ("users", "user:", Mode::Owned(1)),
            ("vip", "user:vip:", Mode::Owned(2)),
            ("pub", "pub:", Mode::Shared),
        ]);
        let keys = |ks: &[&'static str]| ks.iter().map(|k| k.as_bytes()).collect::<Vec<_>>();
        assert_eq!(t.route(1, keys(&["user:1", "pub:1", "free"])), Ok(()));
        assert_eq!(
            t.route(1, keys(&["user:vip:1"])),
            Err(Reply::Error("REDIRECT vip 2 10.0.0.2:6379".into()))
        );
        assert_eq!(
            t.route(2, keys(&["user:1"])),
            Err(Reply::Error("REDIRECT users 1 ?:0".into()))
        );
        match t.route(1, keys(&["user:1", "user:vip:1"])) {
            Err(Reply::Error(e)) => assert!(e.starts_with("CROSSUNIT "), "{e}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(t.route(3, keys(&["pub:1", "free"])), Ok(()));
    }
}
