//! Process memory figures for `INFO memory`: bytes allocated by this
//! process (when the binary installs [`CountingAllocator`]) and the resident
//! set size and machine memory from `/proc`.
//!
//! The allocator is mimalloc (see docs/decisions.md): faster than the system
//! allocator for the many small allocations of a key-value store, no
//! per-allocation header, and it gives freed memory back to the OS.
//!
//! Live bytes are counted exactly, without a shared counter that every
//! allocation on every thread would contend for: each thread gets its own
//! counter slot on first use and is the only writer of it (a plain relaxed
//! load and store, no locked instruction); a reader sums the slots. Slots are
//! never reused, so the [`COUNTER_SLOTS`] first threads have one; threads
//! after them share one atomic counter. The peak is sampled (by INFO and
//! every 100 ms by the server's stats tick), as Redis samples
//! `used_memory_peak` in its cron.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};

use mimalloc::MiMalloc;

/// Threads that get a counter slot of their own.
pub const COUNTER_SLOTS: usize = 256;

/// One counter on its own cache lines (128 bytes: adjacent-line prefetch
/// pairs lines), so threads writing neighbouring slots do not contend.
#[repr(align(128))]
struct Slot(AtomicI64);

/// Bytes allocated minus bytes freed by each slot's thread. One slot can go
/// negative (memory freed by another thread than the one that allocated it);
/// the sum cannot.
static SLOTS: [Slot; COUNTER_SLOTS] = [const { Slot(AtomicI64::new(0)) }; COUNTER_SLOTS];
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);
/// The counter of threads without a slot.
static SHARED: AtomicI64 = AtomicI64::new(0);
static PEAK_BYTES: AtomicU64 = AtomicU64::new(0);
static COUNTING: AtomicBool = AtomicBool::new(false);

const UNASSIGNED: usize = usize::MAX;

thread_local! {
    /// This thread's slot, assigned on its first allocation. A `const`
    /// initializer and a type without `Drop`: no lazy registration and no
    /// destructor, so it is safe to use inside the allocator, even while the
    /// thread is being torn down.
    static SLOT: Cell<usize> = const { Cell::new(UNASSIGNED) };
}

/// Adds `delta` to this thread's count.
fn add(delta: i64) {
    let slot = SLOT
        .try_with(|s| {
            let mut i = s.get();
            if i == UNASSIGNED {
                i = NEXT_SLOT.fetch_add(1, Ordering::Relaxed);
                s.set(i);
            }
            i
        })
        .ok()
        .and_then(|i| SLOTS.get(i));
    match slot {
        // This thread is the only writer of its slot, so a load and a store
        // lose nothing.
        Some(slot) => slot
            .0
            .store(slot.0.load(Ordering::Relaxed) + delta, Ordering::Relaxed),
        None => {
            SHARED.fetch_add(delta, Ordering::Relaxed);
        }
    }
}

fn size_of(bytes: usize) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
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
        add(-size_of(layout.size()));
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
            add(size_of(new_size) - size_of(layout.size()));
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
    add(size_of(size));
}

/// Live heap bytes, if the counting allocator is installed. Also raises the
/// recorded peak.
pub fn allocated_bytes() -> Option<u64> {
    if !COUNTING.load(Ordering::Relaxed) {
        return None;
    }
    let now = u64::try_from(live_bytes()).unwrap_or(0);
    PEAK_BYTES.fetch_max(now, Ordering::Relaxed);
    Some(now)
}

fn live_bytes() -> i64 {
    SLOTS
        .iter()
        .map(|s| s.0.load(Ordering::Relaxed))
        .sum::<i64>()
        + SHARED.load(Ordering::Relaxed)
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

/// Gives memory freed for a while back to the OS. mimalloc returns freed
/// pages after a delay, but only from inside later allocator calls; a server
/// that went quiet after a burst (a bulk load, a checkpoint's buffers) would
/// otherwise keep them resident indefinitely. Called once a second by the
/// background tick, on a thread that holds no lock. Does nothing unless the
/// binary installed [`CountingAllocator`].
pub fn release_freed() {
    if COUNTING.load(Ordering::Relaxed) {
        // SAFETY: `mi_collect` may be called from any thread at any time.
        unsafe { libmimalloc_sys::mi_collect(false) };
    }
}

/// [`release_freed`] on a runtime's worker thread as it goes idle, at most
/// once a second per thread: mimalloc gives back the pages a thread freed
/// only from that thread, so the tick's call alone leaves what the client
/// and replication workers freed after a burst resident.
pub fn release_freed_on_park() {
    use std::cell::Cell;
    use std::time::{Duration, Instant};
    thread_local! {
        static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
    }
    if !COUNTING.load(Ordering::Relaxed) {
        return;
    }
    let now = Instant::now();
    let due = LAST.with(|l| {
        let due = l
            .get()
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
        if due {
            l.set(Some(now));
        }
        due
    });
    if due {
        release_freed();
    }
}

/// `MEMORY PURGE`: returns every page mimalloc can give back to the OS now.
/// Does nothing unless the binary installed [`CountingAllocator`].
pub fn purge() {
    if COUNTING.load(Ordering::Relaxed) {
        // SAFETY: `mi_collect` may be called from any thread at any time.
        unsafe { libmimalloc_sys::mi_collect(true) };
    }
}

/// Bytes allocated when the server state was built (`MEMORY STATS`
/// `startup.allocated`); 0 until [`note_startup`] runs.
static STARTUP_ALLOCATED: AtomicU64 = AtomicU64::new(0);

/// Records the bytes allocated at startup, once.
pub fn note_startup() {
    if let Some(n) = allocated_bytes() {
        let _ = STARTUP_ALLOCATED.compare_exchange(0, n, Ordering::Relaxed, Ordering::Relaxed);
    }
}

pub fn startup_allocated_bytes() -> u64 {
    STARTUP_ALLOCATED.load(Ordering::Relaxed)
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
    fn slots_sum_to_the_live_bytes() {
        // Tests do not install the allocator, so only this test counts.
        let before = live_bytes();
        add(1000);
        let handles: Vec<_> = (0..4).map(|_| std::thread::spawn(|| add(-100))).collect();
        for h in handles {
            assert!(h.join().is_ok());
        }
        assert_eq!(live_bytes() - before, 600);
        add(-600);
        assert_eq!(live_bytes(), before);
    }

    #[test]
    fn proc_figures_are_available_on_linux() {
        assert!(rss_bytes() > 0);
        assert!(total_system_memory() > 0);
    }
}
