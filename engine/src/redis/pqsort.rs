//! Redis's `pqsort`: the Bentley–McIlroy quicksort (NetBSD's `qsort`) that
//! sorts only the partitions overlapping a range of ranks. Redis 7.0's copy
//! has no switch to insertion sort after a partition without swaps (it made
//! some inputs quadratic), so neither has this one. GEO searches with
//! COUNT use it, so which of several equally distant points come first is
//! this algorithm's choice; Chorus follows it step for step to list them as
//! Redis does.

use std::cmp::Ordering;

/// Sorts `v` far enough that ranks `lrange..=rrange` hold what a full sort
/// would put there (equal elements in Redis's order).
pub fn pqsort<T>(v: &mut [T], cmp: impl Fn(&T, &T) -> Ordering, lrange: usize, rrange: usize) {
    let n = v.len();
    sort(v, 0, n, &cmp, lrange, rrange);
}

/// Whether the partition `start..start + len` lies wholly outside the range.
fn outside(start: usize, len: usize, l: usize, r: usize) -> bool {
    (l < start && r < start) || (l >= start + len && r >= start + len)
}

fn insertion<T>(v: &mut [T], a: usize, n: usize, cmp: &impl Fn(&T, &T) -> Ordering) {
    for pm in a + 1..a + n {
        let mut pl = pm;
        while pl > a && cmp(&v[pl - 1], &v[pl]) == Ordering::Greater {
            v.swap(pl, pl - 1);
            pl -= 1;
        }
    }
}

fn med3<T>(v: &[T], a: usize, b: usize, c: usize, cmp: &impl Fn(&T, &T) -> Ordering) -> usize {
    if cmp(&v[a], &v[b]) == Ordering::Less {
        if cmp(&v[b], &v[c]) == Ordering::Less {
            b
        } else if cmp(&v[a], &v[c]) == Ordering::Less {
            c
        } else {
            a
        }
    } else if cmp(&v[b], &v[c]) == Ordering::Greater {
        b
    } else if cmp(&v[a], &v[c]) == Ordering::Less {
        a
    } else {
        c
    }
}

fn vecswap<T>(v: &mut [T], a: usize, b: usize, n: usize) {
    for i in 0..n {
        v.swap(a + i, b + i);
    }
}

fn sort<T>(
    v: &mut [T],
    mut a: usize,
    mut n: usize,
    cmp: &impl Fn(&T, &T) -> Ordering,
    l: usize,
    r: usize,
) {
    loop {
        if n < 7 {
            insertion(v, a, n, cmp);
            return;
        }
        let mut pm = a + n / 2;
        if n > 7 {
            let mut pl = a;
            let mut pn = a + n - 1;
            if n > 40 {
                let d = n / 8;
                pl = med3(v, pl, pl + d, pl + 2 * d, cmp);
                pm = med3(v, pm - d, pm, pm + d, cmp);
                pn = med3(v, pn - 2 * d, pn - d, pn, cmp);
            }
            pm = med3(v, pl, pm, pn, cmp);
        }
        v.swap(a, pm);
        let (mut pa, mut pb) = (a + 1, a + 1);
        let (mut pc, mut pd) = (a + n - 1, a + n - 1);
        loop {
            while pb <= pc {
                let c = cmp(&v[pb], &v[a]);
                if c == Ordering::Greater {
                    break;
                }
                if c == Ordering::Equal {
                    v.swap(pa, pb);
                    pa += 1;
                }
                pb += 1;
            }
            while pb <= pc {
                let c = cmp(&v[pc], &v[a]);
                if c == Ordering::Less {
                    break;
                }
                if c == Ordering::Equal {
                    v.swap(pc, pd);
                    pd -= 1;
                }
                pc -= 1;
            }
            if pb > pc {
                break;
            }
            v.swap(pb, pc);
            pb += 1;
            pc -= 1;
        }
        let pn = a + n;
        let k = (pa - a).min(pb - pa);
        vecswap(v, a, pb - k, k);
        let k = (pd - pc).min(pn - pd - 1);
        vecswap(v, pb, pn - k, k);
        let k = pb - pa;
        if k > 1 && !outside(a, k, l, r) {
            sort(v, a, k, cmp, l, r);
        }
        let k = pd - pc;
        if k <= 1 {
            return;
        }
        a = pn - k;
        n = k;
        if outside(a, n, l, r) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_is_sorted() {
        let mut seed = 7u64;
        for len in [0usize, 1, 5, 8, 41, 300] {
            let mut v: Vec<u64> = (0..len)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (seed >> 33) % 50
                })
                .collect();
            let mut want = v.clone();
            want.sort();
            let hi = len.saturating_sub(1).min(9);
            pqsort(&mut v, |a, b| a.cmp(b), 0, hi);
            assert_eq!(v[..len.min(10)], want[..len.min(10)], "{len}");
        }
    }
}
