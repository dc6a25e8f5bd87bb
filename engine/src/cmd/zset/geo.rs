//! GEO commands (Redis 7.0): GEOADD, GEOPOS, GEODIST, GEOHASH, GEOSEARCH,
//! GEOSEARCHSTORE and the GEORADIUS family, on sorted sets whose scores are
//! Redis's 52-bit geohashes ([`crate::redis::geohash`]).
//!
//! GEOADD is ZADD with the scores computed from the coordinates, so a GEO
//! write is a sorted-set score write: it replicates and merges as one. The
//! searches walk only the score ranges of the (up to) nine cells covering the
//! shape, each found in O(log N) in the ranked index, in Redis's cell order,
//! so unsorted and `COUNT n ANY` replies list the same members in the same
//! order as Redis. STORE, STOREDIST and GEOSEARCHSTORE write the result as the
//! whole value of the destination, as ZRANGESTORE does.

use super::writes::zadd;
use super::{store, zset_of};
use crate::cmd::{double_arg, int_arg, is};
use crate::engine::Txn;
use crate::keyspace::value::ZSetSlot;
use crate::redis::geohash::{
    self, decode_score, format_distance, geohash_string, Search, Shape, LAT_MAX, LAT_MIN, LONG_MAX,
    LONG_MIN,
};
use crate::redis::pqsort::pqsort;
use crate::reply::{errors, Reply};
use bytes::Bytes;
use std::cmp::Ordering;

/// Longitude and latitude from two arguments (`extractLongLatOrReply`).
fn lon_lat(args: &[Bytes]) -> Result<(f64, f64), Reply> {
    let lon = double_arg(&args[0]).ok_or_else(|| Reply::err(errors::NOT_FLOAT))?;
    let lat = double_arg(&args[1]).ok_or_else(|| Reply::err(errors::NOT_FLOAT))?;
    if !(LONG_MIN..=LONG_MAX).contains(&lon) || !(LAT_MIN..=LAT_MAX).contains(&lat) {
        return Err(Reply::err(format!(
            "ERR invalid longitude,latitude pair {lon:.6},{lat:.6}"
        )));
    }
    Ok((lon, lat))
}

/// Metres per unit (`extractUnitOrReply`).
fn unit(arg: &[u8]) -> Result<f64, Reply> {
    Ok(if is(arg, "m") {
        1.0
    } else if is(arg, "km") {
        1000.0
    } else if is(arg, "ft") {
        0.3048
    } else if is(arg, "mi") {
        1609.34
    } else {
        return Err(Reply::err(
            "ERR unsupported unit provided. please use M, KM, FT, MI",
        ));
    })
}

/// A non-negative number (`getDoubleFromObjectOrReply` with Redis's message).
fn length(arg: &[u8], what: &str) -> Result<f64, Reply> {
    double_arg(arg).ok_or_else(|| Reply::err(format!("ERR need numeric {what}")))
}

/// `radius unit`.
fn radius(args: &[Bytes]) -> Result<(Shape, f64), Reply> {
    let r = length(&args[0], "radius")?;
    if r < 0.0 {
        return Err(Reply::err("ERR radius cannot be negative"));
    }
    Ok((Shape::Radius(r), unit(&args[1])?))
}

/// `width height unit`.
fn boxed(args: &[Bytes]) -> Result<(Shape, f64), Reply> {
    let width = length(&args[0], "width")?;
    let height = length(&args[1], "height")?;
    if height < 0.0 || width < 0.0 {
        return Err(Reply::err("ERR height or width cannot be negative"));
    }
    Ok((Shape::Box { width, height }, unit(&args[2])?))
}

fn member_position(z: &ZSetSlot, m: &[u8]) -> Option<(f64, f64)> {
    z.score(m).and_then(decode_score)
}

/// The position of a member a search starts from, or Redis's error.
fn decodable(z: &ZSetSlot, m: &[u8]) -> Result<(f64, f64), Reply> {
    member_position(z, m).ok_or_else(|| Reply::err("ERR could not decode requested zset member"))
}

// ---- GEOADD / GEOPOS / GEODIST / GEOHASH ---------------------------------------

pub(super) fn geoadd(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    let (mut nx, mut xx) = (false, false);
    let mut at = 2;
    while let Some(a) = args.get(at) {
        if is(a, "NX") {
            nx = true;
        } else if is(a, "XX") {
            xx = true;
        } else if !is(a, "CH") {
            break;
        }
        at += 1;
    }
    if !(args.len() - at).is_multiple_of(3) || (xx && nx) {
        return Reply::err(errors::SYNTAX);
    }
    // The ZADD this GEOADD stands for: same options, scores from coordinates.
    let mut zargs: Vec<Bytes> = Vec::with_capacity(at + (args.len() - at) / 3 * 2);
    zargs.push(Bytes::from_static(b"ZADD"));
    zargs.extend_from_slice(&args[1..at]);
    for triple in args[at..].chunks_exact(3) {
        let (lon, lat) = match lon_lat(triple) {
            Ok(p) => p,
            Err(e) => return e,
        };
        let Some(score) = geohash::score_of(lon, lat) else {
            return Reply::err(errors::NOT_FLOAT);
        };
        zargs.push(Bytes::from(score.to_string()));
        zargs.push(triple[2].clone());
    }
    zadd(txn, db, &zargs)
}

/// One reply per member named after the key: `found` of its position, or
/// `missing` (no key, no member).
fn per_member(
    txn: &Txn<'_>,
    db: u8,
    args: &[Bytes],
    found: impl Fn(f64, f64) -> Option<Reply>,
    missing: Reply,
) -> Reply {
    let z = match zset_of(txn, db, &args[1]) {
        Ok(z) => z,
        Err(e) => return e,
    };
    Reply::Array(
        args[2..]
            .iter()
            .map(|m| {
                z.and_then(|z| member_position(z, m))
                    .and_then(|(lon, lat)| found(lon, lat))
                    .unwrap_or_else(|| missing.clone())
            })
            .collect(),
    )
}

pub(super) fn geopos(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    let pair = |lon, lat| {
        Some(Reply::Array(vec![
            Reply::HumanDouble(lon),
            Reply::HumanDouble(lat),
        ]))
    };
    per_member(txn, db, args, pair, Reply::NilArray)
}

pub(super) fn geohash_cmd(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    let hash = |lon, lat| geohash_string(lon, lat).map(|s| Reply::Bulk(Bytes::from(s)));
    per_member(txn, db, args, hash, Reply::Nil)
}

pub(super) fn geodist(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
    let to_meters = match args.len() {
        5 => match unit(&args[4]) {
            Ok(u) => u,
            Err(e) => return e,
        },
        n if n > 5 => return Reply::err(errors::SYNTAX),
        _ => 1.0,
    };
    let z = match zset_of(txn, db, &args[1]) {
        Ok(Some(z)) => z,
        Ok(None) => return Reply::Nil,
        Err(e) => return e,
    };
    match (z.score(&args[2]), z.score(&args[3])) {
        (Some(a), Some(b)) => match (decode_score(a), decode_score(b)) {
            (Some((lon1, lat1)), Some((lon2, lat2))) => Reply::Bulk(Bytes::from(format_distance(
                geohash::distance(lon1, lat1, lon2, lat2) / to_meters,
            ))),
            _ => Reply::Nil,
        },
        _ => Reply::Nil,
    }
}

// ---- GEOSEARCH and GEORADIUS ----------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// GEORADIUS, GEORADIUS_RO: around coordinates.
    Coords,
    /// GEORADIUSBYMEMBER, GEORADIUSBYMEMBER_RO: around a member.
    Member,
    /// GEOSEARCH, GEOSEARCHSTORE.
    Search,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sort {
    None,
    Asc,
    Desc,
}

/// One point found: member, score, distance in metres, position.
struct Point {
    member: Bytes,
    score: f64,
    dist: f64,
    lon: f64,
    lat: f64,
}

/// The GEO search commands: where the centre comes from, whether STORE and
/// STOREDIST are options, whether the destination is the first key.
macro_rules! search_command {
    ($name:ident, $kind:expr, $store_ok:expr, $searchstore:expr) => {
        pub(super) fn $name(txn: &mut Txn<'_>, db: u8, args: &[Bytes]) -> Reply {
            search(txn, db, args, $kind, $store_ok, $searchstore).unwrap_or_else(|e| e)
        }
    };
}

search_command!(georadius, Kind::Coords, true, false);
search_command!(georadius_ro, Kind::Coords, false, false);
search_command!(georadiusbymember, Kind::Member, true, false);
search_command!(georadiusbymember_ro, Kind::Member, false, false);
search_command!(geosearch, Kind::Search, false, false);
search_command!(geosearchstore, Kind::Search, false, true);

/// Redis's `georadiusGeneric`: the arguments parsed and checked in Redis's
/// order, then the cells walked, the points sorted and replied or stored.
fn search(
    txn: &mut Txn<'_>,
    db: u8,
    args: &[Bytes],
    kind: Kind,
    store_ok: bool,
    searchstore: bool,
) -> Result<Reply, Reply> {
    let src = if searchstore { &args[2] } else { &args[1] };
    let z = zset_of(txn, db, src)?;
    let mut center: Option<(f64, f64)> = None;
    let mut shape: Option<(Shape, f64)> = None;
    let base = match kind {
        Kind::Coords => {
            center = Some(lon_lat(&args[2..4])?);
            shape = Some(radius(&args[4..6])?);
            6
        }
        Kind::Member => {
            if let Some(z) = z {
                center = Some(decodable(z, &args[2])?);
                shape = Some(radius(&args[3..5])?);
            }
            5
        }
        Kind::Search if searchstore => 3,
        Kind::Search => 2,
    };
    let mut storekey: Option<&Bytes> = searchstore.then_some(&args[1]);
    let mut storedist = false;
    let (mut withdist, mut withhash, mut withcoord, mut any) = (false, false, false, false);
    let (mut frommember, mut fromloc, mut byradius, mut bybox) = (false, false, false, false);
    let mut sort = Sort::None;
    let mut count: i64 = 0;
    let geosearch = kind == Kind::Search;
    let opts = &args[base..];
    let mut i = 0;
    while i < opts.len() {
        let a = &opts[i];
        let left = opts.len() - i - 1;
        if is(a, "withdist") {
            withdist = true;
        } else if is(a, "withhash") {
            withhash = true;
        } else if is(a, "withcoord") {
            withcoord = true;
        } else if is(a, "any") {
            any = true;
        } else if is(a, "asc") {
            sort = Sort::Asc;
        } else if is(a, "desc") {
            sort = Sort::Desc;
        } else if is(a, "count") && left >= 1 {
            count = int_arg(&opts[i + 1])?;
            if count <= 0 {
                return Err(Reply::err("ERR COUNT must be > 0"));
            }
            i += 1;
        } else if (is(a, "store") || is(a, "storedist")) && left >= 1 && store_ok {
            storekey = Some(&opts[i + 1]);
            storedist = is(a, "storedist");
            i += 1;
        } else if is(a, "storedist") && searchstore {
            storedist = true;
        } else if is(a, "frommember") && left >= 1 && geosearch && !fromloc {
            if let Some(z) = z {
                center = Some(decodable(z, &opts[i + 1])?);
            }
            frommember = true;
            i += 1;
        } else if is(a, "fromlonlat") && left >= 2 && geosearch && !frommember {
            center = Some(lon_lat(&opts[i + 1..i + 3])?);
            fromloc = true;
            i += 2;
        } else if is(a, "byradius") && left >= 2 && geosearch && !bybox {
            shape = Some(radius(&opts[i + 1..i + 3])?);
            byradius = true;
            i += 2;
        } else if is(a, "bybox") && left >= 3 && geosearch && !byradius {
            shape = Some(boxed(&opts[i + 1..i + 4])?);
            bybox = true;
            i += 3;
        } else {
            return Err(Reply::err(errors::SYNTAX));
        }
        i += 1;
    }
    if storekey.is_some() && (withdist || withhash || withcoord) {
        return Err(Reply::err(format!(
            "ERR {} is not compatible with WITHDIST, WITHHASH and WITHCOORD options",
            if searchstore {
                "GEOSEARCHSTORE"
            } else {
                "STORE option in GEORADIUS"
            }
        )));
    }
    let name = String::from_utf8_lossy(&args[0]);
    if geosearch && !(frommember || fromloc) {
        return Err(Reply::err(format!(
            "ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for {name}"
        )));
    }
    if geosearch && !(byradius || bybox) {
        return Err(Reply::err(format!(
            "ERR exactly one of BYRADIUS and BYBOX can be specified for {name}"
        )));
    }
    if any && count == 0 {
        return Err(Reply::err("ERR the ANY argument requires COUNT argument"));
    }
    let (Some(z), Some((lon, lat)), Some((shape, to_meters))) = (z, center, shape) else {
        // No source key.
        return Ok(match storekey {
            Some(dst) => store(txn, db, &dst.clone(), Vec::new()),
            None => Reply::Array(Vec::new()),
        });
    };
    if count != 0 && sort == Sort::None && !any {
        sort = Sort::Asc;
    }
    let area = Search {
        lon,
        lat,
        shape,
        to_meters,
    };
    let limit = if any { count as usize } else { 0 };
    let mut points = points_within(z, &area, limit);
    if points.is_empty() && storekey.is_none() {
        return Ok(Reply::Array(Vec::new()));
    }
    let returned = if count > 0 && (count as u64) < points.len() as u64 {
        count as usize
    } else {
        points.len()
    };
    if sort != Sort::None {
        // `sort_gp_asc`: equal distances compare equal; NaN is "less".
        let asc = |a: &Point, b: &Point| a.dist.partial_cmp(&b.dist).unwrap_or(Ordering::Less);
        let by = |a: &Point, b: &Point| match sort {
            Sort::Desc => asc(a, b).reverse(),
            _ => asc(a, b),
        };
        if returned == points.len() {
            // glibc's qsort is a merge sort: stable, as `sort_by` is.
            points.sort_by(by);
        } else {
            pqsort(&mut points, by, 0, returned - 1);
        }
    }
    points.truncate(returned);
    if let Some(dst) = storekey {
        let dst = dst.clone();
        let items = points
            .into_iter()
            .map(|p| {
                let score = if storedist {
                    p.dist / to_meters
                } else {
                    p.score
                };
                (p.member, score)
            })
            .collect();
        return Ok(store(txn, db, &dst, items));
    }
    Ok(Reply::Array(
        points
            .into_iter()
            .map(|p| {
                if !(withdist || withhash || withcoord) {
                    return Reply::Bulk(p.member);
                }
                let mut item = vec![Reply::Bulk(p.member)];
                if withdist {
                    item.push(Reply::Bulk(Bytes::from(format_distance(
                        p.dist / to_meters,
                    ))));
                }
                if withhash {
                    item.push(Reply::Int(p.score as i64));
                }
                if withcoord {
                    item.push(Reply::Array(vec![
                        Reply::HumanDouble(p.lon),
                        Reply::HumanDouble(p.lat),
                    ]));
                }
                Reply::Array(item)
            })
            .collect(),
    ))
}

/// The members inside `area`, cell after cell, each cell's score range
/// `[min, max)` walked from its first entry (found in O(log N)); with a
/// `limit` (ANY), the walk stops once that many were found.
fn points_within(z: &ZSetSlot, area: &Search, limit: usize) -> Vec<Point> {
    let mut points = Vec::new();
    for (min, max) in area.cells() {
        if limit != 0 && points.len() >= limit {
            break;
        }
        let (min, max) = (min as f64, max as f64);
        let first = z.index.partition_point(|e| e.0 .0 < min);
        for (score, member) in z.index.iter_from(first) {
            if score.0 >= max {
                break;
            }
            if let Some((lon, lat)) = decode_score(score.0) {
                if let Some(dist) = area.distance_if_within(lon, lat) {
                    points.push(Point {
                        member: member.clone(),
                        score: score.0,
                        dist,
                        lon,
                        lat,
                    });
                }
            }
            if limit != 0 && points.len() >= limit {
                break;
            }
        }
    }
    points
}
