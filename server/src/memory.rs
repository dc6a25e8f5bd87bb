//! Process memory figures for `INFO memory`: bytes allocated by this
//! process (when the binary installs [`CountingAllocator`]) and the resident
//! set size and machine memory from `/proc`.
//!
//! The allocator is mimalloc (see docs/decisions.md): faster than the system
//! allocator for the many small allocations of a key-value store, no
//! per-allocation header, and it gives freed memory back to the OS. Live bytes
//! are counted in [`COUNTER_SHARDS`] cache-line-sized counters, each thread
//! adding to its own, and summed when read: an exact `used_memory` without
//! every allocation on every thread contending for one shared counter. The
//! peak is sampled (by INFO and every 100 ms by the server's stats tick), as
//! Redis samples `used_memory_peak` in its cron.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};

use mimalloc::MiMalloc;

/// Counters live bytes are spread over; threads beyond this share them.
pub const COUNTER_SHARDS: usize = 32;

/// One counter on its own cache lines (128 bytes: adjacent-line prefetch
/// pairs lines), so threads adding to neighbouring shards do not contend.
#[repr(align(128))]
struct Shard(AtomicI64);

/// Live bytes, split over shards. A shard can go negative (memory freed by
/// another thread than the one that allocated it); the sum cannot.
static SHARDS: [Shard; COUNTER_SHARDS] = [const { Shard(AtomicI64::new(0)) }; COUNTER_SHARDS];
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicU64 = AtomicU64::new(0);
static COUNTING: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// This thread's shard, assigned on its first allocation. A `const`
    /// initializer and a type without `Drop`: no lazy registration and no
    /// destructor, so it is safe to use inside the allocator, even while the
    /// thread is being torn down.
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn shard() -> &'static AtomicI64 {
    let i = SHARD
        .try_with(|s| {
            let mut i = s.get();
            if i == usize::MAX {
                i = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % COUNTER_SHARDS;
                s.set(i);
            }
            i
        })
        .unwrap_or(0);
    // `i` is always below COUNTER_SHARDS.
    &SHARDS[i % COUNTER_SHARDS].0
}

fn add(bytes: usize) {
    shard().fetch_add(bytes as i64, Ordering::Relaxed);
}

fn sub(bytes: usize) {
    shard().fetch_sub(bytes as i64, Ordering::Relaxed);
}

/// mimalloc, counting live bytes so `used_memory` is exact. The binary
/// installs it with `#[global_allocator]`; library users (tests) fall back to
/// the resident set size.
pub struct CountingAllocator;

// SAFETY: every call is forwarded unchanged to mimalloc, which upholds the
// `GlobalAlloc` contract; the counters are only statistics.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = MiMalloc.alloc(layout);
        if !ptr.is_null() {
            note_alloc(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        MiMalloc.dealloc(ptr, layout);
        sub(layout.size());
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = MiMalloc.alloc_zeroed(layout);
        if !ptr.is_null() {
            note_alloc(layout.size());
        }
        ptr
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = MiMalloc.realloc(ptr, layout, new_size);
        if !new.is_null() {
            sub(layout.size());
            add(new_size);
        }
        new
    }
}

fn note_alloc(size: usize) {
    // Read first: after the first allocation the flag's cache line is only
    // ever read, so it is shared by every core without traffic.
    if !COUNTING.load(Ordering::Relaxed) {
        COUNTING.store(true, Ordering::Relaxed);
    }
    add(size);
}

/// Live heap bytes, if the counting allocator is installed. Also raises the
/// recorded peak.
pub fn allocated_bytes() -> Option<u64> {
    if !COUNTING.load(Ordering::Relaxed) {
        return None;
    }
    let sum: i64 = SHARDS.iter().map(|s| s.0.load(Ordering::Relaxed)).sum();
    let now = u64::try_from(sum).unwrap_or(0);
    PEAK_BYTES.fetch_max(now, Ordering::Relaxed);
    Some(now)
}

/// Highest `allocated_bytes` seen by a sample (see [`sample_peak`]).
pub fn peak_allocated_bytes() -> Option<u64> {
    COUNTING
        .load(Ordering::Relaxed)
        .then(|| PEAK_BYTES.load(Ordering::Relaxed))
}

/// Samples the live bytes into the peak; called every 100 ms by the server.
pub fn sample_peak() {
    let _ = allocated_bytes();
}

/// The allocator's name for `INFO memory` (`mem_allocator`), as Redis says
/// `jemalloc-5.3.0` or `libc`.
pub fn allocator_name() -> &'static str {
    if COUNTING.load(Ordering::Relaxed) {
        "mimalloc"
    } else {
        "libc"
    }
}

/// Resident set size: the second field of `/proc/self/statm` times the page size.
pub fn rss_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .unwrap_or(0);
    pages.saturating_mul(page_size())
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// `MemTotal` from `/proc/meminfo`, in bytes.
pub fn total_system_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .unwrap_or(0)
        .saturating_mul(1024)
}

/// (system, user) CPU seconds of this process.
pub fn cpu_seconds() -> (f64, f64) {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a full rusage into the pointer we give it.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return (0.0, 0.0);
    }
    // SAFETY: rc == 0 means the struct was filled in.
    let usage = unsafe { usage.assume_init() };
    let secs = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (secs(usage.ru_stime), secs(usage.ru_utime))
}

/// Redis's `bytesToHuman`: `1.04M`, `11.93M`, `0B`...
pub fn bytes_to_human(n: u64) -> String {
    let n_f = n as f64;
    const K: f64 = 1024.0;
    if n < 1024 {
        format!("{n}B")
    } else if n_f < K * K {
        format!("{:.2}K", n_f / K)
    } else if n_f < K * K * K {
        format!("{:.2}M", n_f / (K * K))
    } else if n_f < K * K * K * K {
        format!("{:.2}G", n_f / (K * K * K))
    } else if n_f < K * K * K * K * K {
        format!("{:.2}T", n_f / (K * K * K * K))
    } else {
        format!("{:.2}P", n_f / (K * K * K * K * K))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(bytes_to_human(0), "0B");
        assert_eq!(bytes_to_human(1091064), "1.04M");
        assert_eq!(bytes_to_human(12509184), "11.93M");
        assert_eq!(bytes_to_human(32768), "32.00K");
    }

    #[test]
    fn shards_sum_to_the_live_bytes() {
        let before: i64 = SHARDS.iter().map(|s| s.0.load(Ordering::Relaxed)).sum();
        add(1000);
        let handle = std::thread::spawn(|| sub(400));
        assert!(handle.join().is_ok());
        let after: i64 = SHARDS.iter().map(|s| s.0.load(Ordering::Relaxed)).sum();
        assert_eq!(after - before, 600);
        sub(600);
    }

    #[test]
    fn proc_figures_are_available_on_linux() {
        assert!(rss_bytes() > 0);
        assert!(total_system_memory() > 0);
    }
}
