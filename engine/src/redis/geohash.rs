//! Redis 7.0's geohash: the 52-bit interleaved score GEOADD stores, its
//! decoding back to a cell's centre, the 9-cell cover of a search shape, the
//! haversine distance, and the number formats GEO replies use.
//!
//! Every step is the same floating-point computation in the same order as
//! Redis's, so scores, coordinates and distances match redis-server's bit for
//! bit (and the search visits the same cells in the same order).

/// Latitude limits of the Web Mercator projection (EPSG:3785).
pub const LAT_MIN: f64 = -85.05112878;
pub const LAT_MAX: f64 = 85.05112878;
pub const LONG_MIN: f64 = -180.0;
pub const LONG_MAX: f64 = 180.0;
/// Bits per coordinate of a stored score (52 bits in all).
pub const STEP_MAX: u8 = 26;

const EARTH_RADIUS_IN_METERS: f64 = 6372797.560856;
const MERCATOR_MAX: f64 = 20037726.37;
const D_R: f64 = std::f64::consts::PI / 180.0;

fn deg_rad(ang: f64) -> f64 {
    ang * D_R
}

fn rad_deg(ang: f64) -> f64 {
    ang / D_R
}

/// A geohash of `step` bits per coordinate (latitude in the even bits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hash {
    pub bits: u64,
    pub step: u8,
}

impl Hash {
    /// Redis's "zero" hash: a neighbour excluded from the search.
    fn is_zero(self) -> bool {
        self.bits == 0 && self.step == 0
    }

    /// The hash shifted to 52 bits: the score of the cell's first point.
    pub fn align52(self) -> u64 {
        self.bits << (52 - u32::from(self.step) * 2)
    }
}

#[derive(Clone, Copy, Debug)]
struct Range {
    min: f64,
    max: f64,
}

const WGS84: (Range, Range) = (
    Range {
        min: LONG_MIN,
        max: LONG_MAX,
    },
    Range {
        min: LAT_MIN,
        max: LAT_MAX,
    },
);

fn interleave64(xlo: u32, ylo: u32) -> u64 {
    const B: [u64; 5] = [
        0x5555555555555555,
        0x3333333333333333,
        0x0F0F0F0F0F0F0F0F,
        0x00FF00FF00FF00FF,
        0x0000FFFF0000FFFF,
    ];
    const S: [u32; 5] = [1, 2, 4, 8, 16];
    let (mut x, mut y) = (u64::from(xlo), u64::from(ylo));
    for i in (0..5).rev() {
        x = (x | (x << S[i])) & B[i];
        y = (y | (y << S[i])) & B[i];
    }
    x | (y << 1)
}

fn deinterleave64(interleaved: u64) -> u64 {
    const B: [u64; 6] = [
        0x5555555555555555,
        0x3333333333333333,
        0x0F0F0F0F0F0F0F0F,
        0x00FF00FF00FF00FF,
        0x0000FFFF0000FFFF,
        0x00000000FFFFFFFF,
    ];
    const S: [u32; 6] = [0, 1, 2, 4, 8, 16];
    let (mut x, mut y) = (interleaved, interleaved >> 1);
    for i in 0..6 {
        x = (x | (x >> S[i])) & B[i];
        y = (y | (y >> S[i])) & B[i];
    }
    x | (y << 32)
}

/// `geohashEncode` over the given ranges; `None` outside them (or outside
/// the WGS84 limits).
fn encode_in(long_r: Range, lat_r: Range, lon: f64, lat: f64, step: u8) -> Option<Hash> {
    if !(LONG_MIN..=LONG_MAX).contains(&lon) || !(LAT_MIN..=LAT_MAX).contains(&lat) {
        return None;
    }
    if lat < lat_r.min || lat > lat_r.max || lon < long_r.min || lon > long_r.max {
        return None;
    }
    let mut lat_offset = (lat - lat_r.min) / (lat_r.max - lat_r.min);
    let mut long_offset = (lon - long_r.min) / (long_r.max - long_r.min);
    lat_offset *= (1u64 << step) as f64;
    long_offset *= (1u64 << step) as f64;
    // C's conversion to uint32_t (the offsets are in 0..=2^step).
    Some(Hash {
        bits: interleave64(lat_offset as u32, long_offset as u32),
        step,
    })
}

/// The hash of a WGS84 point at `step` bits per coordinate.
pub fn encode(lon: f64, lat: f64, step: u8) -> Option<Hash> {
    encode_in(WGS84.0, WGS84.1, lon, lat, step)
}

/// The score GEOADD stores for a point.
pub fn score_of(lon: f64, lat: f64) -> Option<u64> {
    encode(lon, lat, STEP_MAX).map(Hash::align52)
}

/// The standard geohash string GEOHASH returns: the point re-encoded over
/// latitudes ±90, 11 characters (the last always `0`).
pub fn geohash_string(lon: f64, lat: f64) -> Option<String> {
    const ALPHABET: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";
    let h = encode_in(
        WGS84.0,
        Range {
            min: -90.0,
            max: 90.0,
        },
        lon,
        lat,
        26,
    )?;
    Some(
        (0..11)
            .map(|i| {
                let idx = if i == 10 {
                    0
                } else {
                    (h.bits >> (52 - (i + 1) * 5)) & 0x1f
                };
                ALPHABET[idx as usize] as char
            })
            .collect(),
    )
}

/// A cell: its longitude and latitude bounds.
#[derive(Clone, Copy, Debug)]
struct Area {
    lon: Range,
    lat: Range,
}

fn decode(h: Hash) -> Option<Area> {
    if h.is_zero() {
        return None;
    }
    let (long_r, lat_r) = WGS84;
    let sep = deinterleave64(h.bits);
    let lat_scale = lat_r.max - lat_r.min;
    let long_scale = long_r.max - long_r.min;
    let ilato = sep as u32;
    let ilono = (sep >> 32) as u32;
    let cells = (1u64 << h.step) as f64;
    Some(Area {
        lat: Range {
            min: lat_r.min + (f64::from(ilato) * 1.0 / cells) * lat_scale,
            max: lat_r.min + ((f64::from(ilato) + 1.0) * 1.0 / cells) * lat_scale,
        },
        lon: Range {
            min: long_r.min + (f64::from(ilono) * 1.0 / cells) * long_scale,
            max: long_r.min + ((f64::from(ilono) + 1.0) * 1.0 / cells) * long_scale,
        },
    })
}

/// C's `(uint64_t)` conversion of a double as x86-64 compilers emit it
/// (`cvttsd2si`, with 2^63 subtracted first from the upper half): -1 wraps to
/// all ones, and what does not fit (huge, infinite, NaN) becomes 2^63 below
/// zero and 0 above. Only scores no GEOADD wrote get there; Redis answers
/// for them with these bits, so Chorus does too.
fn c_to_u64(x: f64) -> u64 {
    const TWO63: f64 = 9223372036854775808.0;
    let cvt = |v: f64| -> i64 {
        if (-TWO63..TWO63).contains(&v) {
            v as i64
        } else {
            i64::MIN
        }
    };
    if x < TWO63 {
        cvt(x) as u64
    } else {
        (cvt(x - TWO63) as u64) ^ (1 << 63)
    }
}

/// The point a score stands for (the centre of its cell, clamped to the
/// limits), as `decodeGeohash` computes it: longitude, latitude.
pub fn decode_score(score: f64) -> Option<(f64, f64)> {
    let area = decode(Hash {
        bits: c_to_u64(score),
        step: STEP_MAX,
    })?;
    let lon = ((area.lon.min + area.lon.max) / 2.0).clamp(LONG_MIN, LONG_MAX);
    let lat = ((area.lat.min + area.lat.max) / 2.0).clamp(LAT_MIN, LAT_MAX);
    Some((lon, lat))
}

/// `geohash_move_x` / `geohash_move_y`: one cell east or west (`axis` the
/// longitude bits, 0xaa…) or north or south (the latitude bits, 0x55…).
fn move_axis(h: &mut Hash, d: i8, axis: u64) {
    if d == 0 {
        return;
    }
    let shift = 64 - u32::from(h.step) * 2;
    let zz = !axis >> shift;
    let mut c = h.bits & axis;
    if d > 0 {
        c = c.wrapping_add(zz + 1);
    } else {
        c |= zz;
        c = c.wrapping_sub(zz + 1);
    }
    h.bits = (c & (axis >> shift)) | (h.bits & !axis);
}

const LONG_BITS: u64 = 0xaaaaaaaaaaaaaaaa;
const LAT_BITS: u64 = 0x5555555555555555;

/// A search area: a circle of `radius`, or a `width` × `height` box, in the
/// unit whose size in metres is `to_meters`, around `lon`, `lat`.
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    Radius(f64),
    Box { width: f64, height: f64 },
}

#[derive(Clone, Copy, Debug)]
pub struct Search {
    pub lon: f64,
    pub lat: f64,
    pub shape: Shape,
    pub to_meters: f64,
}

/// `geohashEstimateStepsByRadius`.
fn steps_by_radius(mut range_meters: f64, lat: f64) -> u8 {
    if range_meters == 0.0 {
        return 26;
    }
    let mut step: i32 = 1;
    while range_meters < MERCATOR_MAX {
        range_meters *= 2.0;
        step += 1;
    }
    step -= 2;
    if !(-66.0..=66.0).contains(&lat) {
        step -= 1;
        if !(-80.0..=80.0).contains(&lat) {
            step -= 1;
        }
    }
    step.clamp(1, 26) as u8
}

impl Search {
    /// Half height and half width in metres (the radius for a circle).
    fn half_sides(&self) -> (f64, f64) {
        match self.shape {
            Shape::Radius(r) => (self.to_meters * r, self.to_meters * r),
            Shape::Box { width, height } => (
                self.to_meters * (height / 2.0),
                self.to_meters * (width / 2.0),
            ),
        }
    }

    /// `geohashBoundingBox`: min lon, min lat, max lon, max lat.
    fn bounds(&self) -> [f64; 4] {
        let (height, width) = self.half_sides();
        let lat_delta = rad_deg(height / EARTH_RADIUS_IN_METERS);
        let long_delta_top =
            rad_deg(width / EARTH_RADIUS_IN_METERS / deg_rad(self.lat + lat_delta).cos());
        let long_delta_bottom =
            rad_deg(width / EARTH_RADIUS_IN_METERS / deg_rad(self.lat - lat_delta).cos());
        let delta = if self.lat < 0.0 {
            long_delta_bottom
        } else {
            long_delta_top
        };
        [
            self.lon - delta,
            self.lat - lat_delta,
            self.lon + delta,
            self.lat + lat_delta,
        ]
    }

    /// The score ranges `[min, max)` of the cells that cover the shape, in
    /// Redis's order (centre, N, S, E, W, NE, NW, SE, SW), excluded and
    /// repeated cells left out as `membersOfAllNeighbors` leaves them out.
    pub fn cells(&self) -> Vec<(u64, u64)> {
        let [min_lon, min_lat, max_lon, max_lat] = self.bounds();
        let radius_meters = match self.shape {
            Shape::Radius(r) => r,
            Shape::Box { width, height } => {
                ((width / 2.0) * (width / 2.0) + (height / 2.0) * (height / 2.0)).sqrt()
            }
        } * self.to_meters;
        let mut steps = steps_by_radius(radius_meters, self.lat);
        let around = |steps: u8| -> Option<(Hash, [Hash; 8], Area)> {
            let hash = encode(self.lon, self.lat, steps)?;
            // north, south, east, west, north_east, north_west, south_east,
            // south_west
            let moves: [(i8, i8); 8] = [
                (0, 1),
                (0, -1),
                (1, 0),
                (-1, 0),
                (1, 1),
                (-1, 1),
                (1, -1),
                (-1, -1),
            ];
            let neighbours = moves.map(|(dx, dy)| {
                let mut n = hash;
                move_axis(&mut n, dx, LONG_BITS);
                move_axis(&mut n, dy, LAT_BITS);
                n
            });
            Some((hash, neighbours, decode(hash)?))
        };
        let Some((mut hash, mut n, mut area)) = around(steps) else {
            return Vec::new();
        };
        let edge = |h: Hash| decode(h);
        let decrease = match (edge(n[0]), edge(n[1]), edge(n[2]), edge(n[3])) {
            (Some(north), Some(south), Some(east), Some(west)) => {
                north.lat.max < max_lat
                    || south.lat.min > min_lat
                    || east.lon.max < max_lon
                    || west.lon.min > min_lon
            }
            _ => false,
        };
        if steps > 1 && decrease {
            steps -= 1;
            match around(steps) {
                Some(a) => (hash, n, area) = a,
                None => return Vec::new(),
            }
        }
        if steps >= 2 {
            // Indices in `n`: 0 N, 1 S, 2 E, 3 W, 4 NE, 5 NW, 6 SE, 7 SW.
            let useless = [
                (area.lat.min < min_lat, [1, 7, 6]),
                (area.lat.max > max_lat, [0, 4, 5]),
                (area.lon.min < min_lon, [3, 7, 5]),
                (area.lon.max > max_lon, [2, 6, 4]),
            ];
            for (_, cells) in useless.iter().filter(|(out, _)| *out) {
                for &i in cells {
                    n[i] = Hash::default();
                }
            }
        }
        let all = [hash, n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7]];
        let mut out = Vec::with_capacity(9);
        let mut last: Option<usize> = None;
        for (i, h) in all.iter().enumerate() {
            if h.is_zero() {
                continue;
            }
            // Redis compares with the last processed cell only when that
            // index is not 0 (`last_processed &&`).
            if let Some(l) = last.filter(|&l| l != 0) {
                if all[l] == *h {
                    continue;
                }
            }
            let min = h.align52();
            let max = Hash {
                bits: h.bits + 1,
                step: h.step,
            }
            .align52();
            out.push((min, max));
            last = Some(i);
        }
        out
    }

    /// The distance in metres from the centre to a point inside the shape,
    /// or `None` outside it.
    pub fn distance_if_within(&self, lon: f64, lat: f64) -> Option<f64> {
        match self.shape {
            Shape::Radius(r) => {
                let d = distance(self.lon, self.lat, lon, lat);
                (d <= r * self.to_meters).then_some(d)
            }
            Shape::Box { width, height } => {
                let (width_m, height_m) = (width * self.to_meters, height * self.to_meters);
                let lon_distance = distance(lon, lat, self.lon, lat);
                let lat_distance = distance(lon, lat, lon, self.lat);
                if lon_distance > width_m / 2.0 || lat_distance > height_m / 2.0 {
                    return None;
                }
                Some(distance(self.lon, self.lat, lon, lat))
            }
        }
    }
}

/// The haversine distance in metres (`geohashGetDistance`).
pub fn distance(lon1d: f64, lat1d: f64, lon2d: f64, lat2d: f64) -> f64 {
    let lat1r = deg_rad(lat1d);
    let lon1r = deg_rad(lon1d);
    let lat2r = deg_rad(lat2d);
    let lon2r = deg_rad(lon2d);
    let u = ((lat2r - lat1r) / 2.0).sin();
    let v = ((lon2r - lon1r) / 2.0).sin();
    2.0 * EARTH_RADIUS_IN_METERS * (u * u + lat1r.cos() * lat2r.cos() * v * v).sqrt().asin()
}

/// A distance as GEO replies print it: `%.4f`.
pub fn format_distance(d: f64) -> String {
    if d.is_nan() {
        return if d.is_sign_negative() { "-nan" } else { "nan" }.into();
    }
    format!("{d:.4}")
}

/// A coordinate as Redis prints it (`ld2string` in human mode: `%.17Lf` with
/// the trailing zeros, and a trailing dot, removed; `-0` is `0`).
pub fn format_coordinate(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.into();
    }
    let s = format!("{v:.17}");
    let t = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    if t == "-0" {
        "0".into()
    } else {
        t.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_and_positions_are_redis_s() {
        // Palermo and Catania, from Redis's documentation.
        assert_eq!(score_of(13.361389, 38.115556), Some(3479099956230698));
        assert_eq!(score_of(15.087269, 37.502669), Some(3479447370796909));
        let (lon, lat) = decode_score(3479099956230698.0).unwrap();
        assert_eq!(format_coordinate(lon), "13.36138933897018433");
        assert_eq!(format_coordinate(lat), "38.11555639549629859");
        assert_eq!(geohash_string(lon, lat).as_deref(), Some("sqc8b49rny0"));
        let (lon2, lat2) = decode_score(3479447370796909.0).unwrap();
        assert_eq!(
            format_distance(distance(lon, lat, lon2, lat2)),
            "166274.1516"
        );
        assert_eq!(score_of(180.1, 0.0), None);
        assert_eq!(score_of(0.0, 85.06), None);
        assert_eq!(format_coordinate(-0.0), "0");
        assert_eq!(format_coordinate(1.5), "1.5");
        assert_eq!(format_coordinate(2.0), "2");
    }
}
