//! Process memory figures for `INFO memory`: bytes allocated by this
//! process (when the binary installs [`CountingAllocator`]) and the resident
//! set size and machine memory from `/proc`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);
static PEAK_BYTES: AtomicU64 = AtomicU64::new(0);
static COUNTING: AtomicBool = AtomicBool::new(false);

/// The system allocator, counting live bytes so `used_memory` is exact.
/// The binary installs it with `#[global_allocator]`; library users (tests)
/// fall back to the resident set size.
pub struct CountingAllocator;

// SAFETY: every call is forwarded unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the counters are only statistics.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc(layout);
        if !ptr.is_null() {
            note_alloc(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        ALLOCATED_BYTES.fetch_sub(layout.size() as u64, Ordering::Relaxed);
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc_zeroed(layout);
        if !ptr.is_null() {
            note_alloc(layout.size());
        }
        ptr
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = System.realloc(ptr, layout, new_size);
        if !new.is_null() {
            ALLOCATED_BYTES.fetch_sub(layout.size() as u64, Ordering::Relaxed);
            note_alloc(new_size);
        }
        new
    }
}

fn note_alloc(size: usize) {
    COUNTING.store(true, Ordering::Relaxed);
    let now = ALLOCATED_BYTES.fetch_add(size as u64, Ordering::Relaxed) + size as u64;
    PEAK_BYTES.fetch_max(now, Ordering::Relaxed);
}

/// Live heap bytes, if the counting allocator is installed.
pub fn allocated_bytes() -> Option<u64> {
    COUNTING
        .load(Ordering::Relaxed)
        .then(|| ALLOCATED_BYTES.load(Ordering::Relaxed))
}

/// Highest `allocated_bytes` seen.
pub fn peak_allocated_bytes() -> Option<u64> {
    COUNTING
        .load(Ordering::Relaxed)
        .then(|| PEAK_BYTES.load(Ordering::Relaxed))
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
    fn proc_figures_are_available_on_linux() {
        assert!(rss_bytes() > 0);
        assert!(total_system_memory() > 0);
    }
}
