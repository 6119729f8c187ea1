//! The global allocator: the system's (glibc), with the most recently freed large block kept
//! for the next allocation of the same size.
//!
//! glibc maps blocks of 32 MiB and more (its largest mmap threshold, set by
//! [`crate::session::tune_allocator`]) fresh from the kernel and unmaps them when freed, so a
//! buffer of that size allocated once per pass (the logits: 100 MB at 4×128 tokens of a 49k
//! vocabulary, and their gradient) costs a page fault and a cleared page per 4 KiB, every pass.
//! One freed block of at least [`LARGE`] bytes is kept and handed back to the next allocation of
//! exactly its size and alignment; any other large allocation (or reallocation, or a zeroed one)
//! returns the kept block to the system first, so a kept block never sits beside a large block of
//! another size, and [`release`] returns it where a pass's memory measurement starts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;

/// Blocks from this size on are kept when freed; glibc's mmap threshold, as
/// [`crate::session::tune_allocator`] sets it, is the same size.
pub(crate) const LARGE: usize = 32 << 20;

/// The system allocator, keeping one freed large block.
pub(crate) struct KeepLarge {
    kept: Mutex<Option<(usize, Layout)>>,
}

impl KeepLarge {
    pub(crate) const fn new() -> KeepLarge {
        KeepLarge { kept: Mutex::new(None) }
    }

    /// The kept block, taken out (a poisoned lock cannot arise: nothing panics while it is held).
    fn take(&self) -> Option<(usize, Layout)> {
        self.kept.lock().map(|mut k| k.take()).unwrap_or(None)
    }

    /// Returns the kept block, if any, to the system.
    fn release_kept(&self) {
        if let Some((p, layout)) = self.take() {
            // SAFETY: the block was allocated by System with this layout and is owned by no one
            unsafe { System.dealloc(p as *mut u8, layout) };
        }
    }
}

// SAFETY: every block handed out comes from System with the layout asked for (a kept block is
// handed out only for an identical layout), and is returned to System with its own layout
unsafe impl GlobalAlloc for KeepLarge {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= LARGE {
            match self.take() {
                Some((p, kept)) if kept == layout => return p as *mut u8,
                Some((p, kept)) => unsafe { System.dealloc(p as *mut u8, kept) },
                None => {}
            }
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= LARGE {
            self.release_kept();
        }
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() >= LARGE {
            let previous = self.kept.lock().map(|mut k| k.replace((ptr as usize, layout)));
            match previous {
                Ok(Some((p, kept))) => unsafe { System.dealloc(p as *mut u8, kept) },
                Ok(None) => {}
                Err(_) => unsafe { System.dealloc(ptr, layout) },
            }
            return;
        }
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.size() >= LARGE || new_size >= LARGE {
            self.release_kept();
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: KeepLarge = KeepLarge::new();

/// Returns the kept block to the system (before a peak-memory measurement starts).
pub(crate) fn release() {
    ALLOCATOR.release_kept();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A freed large block serves the next allocation of its layout, and is returned to the
    /// system before a large allocation of another size (or a zeroed one), so that no two large
    /// blocks are held where one is live; small blocks are never kept.
    #[test]
    fn keeps_one_large_block_for_its_own_layout_only() {
        let a = KeepLarge::new();
        let big = Layout::from_size_align(LARGE, 64).unwrap();
        let other = Layout::from_size_align(LARGE + 4096, 64).unwrap();
        let small = Layout::from_size_align(4096, 64).unwrap();
        let kept = |a: &KeepLarge| a.kept.lock().unwrap().map(|(p, l)| (p, l.size()));
        // SAFETY: every block is allocated by `a` with the layout it is freed with, and written
        // only within its size
        unsafe {
            let p = a.alloc(big);
            assert!(!p.is_null());
            p.write_bytes(7, LARGE);
            a.dealloc(p, big);
            assert_eq!(kept(&a), Some((p as usize, LARGE)), "a freed large block is kept");
            let q = a.alloc(big);
            assert_eq!(q, p, "the next allocation of its layout gets it back");
            assert_eq!(kept(&a), None);
            a.dealloc(q, big);
            let s = a.alloc(small);
            a.dealloc(s, small);
            assert_eq!(kept(&a), Some((p as usize, LARGE)), "small blocks are neither kept nor served from the kept one");
            let r = a.alloc(other);
            assert_eq!(kept(&a), None, "a large allocation of another size returns the kept block first");
            a.dealloc(r, other);
            assert_eq!(kept(&a).map(|k| k.1), Some(LARGE + 4096));
            let z = a.alloc_zeroed(other);
            assert_eq!(kept(&a), None, "a zeroed allocation is not served from the kept block");
            assert!(std::slice::from_raw_parts(z, other.size()).iter().all(|&b| b == 0));
            a.dealloc(z, other);
            a.release_kept();
            assert_eq!(kept(&a), None);
        }
    }
}
