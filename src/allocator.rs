//! The global allocator: mimalloc, called the way that keeps it on its
//! fast path.
//!
//! The `mimalloc` crate passes every request to `mi_malloc_aligned`, and
//! mimalloc 3's aligned path is fast only while the size class's page
//! has a free block ready. When it has none, a size whose class is not a
//! power of two (classes of 48, 80, 96 bytes …) is over-allocated from a
//! larger class, and the right class's page is never refilled: from then
//! on every allocation of that size takes the slow path. In callgrind that
//! cost ~700 instructions per login, from 4.7 such allocations. The plain
//! `mi_malloc` refills as it should, and every block it returns is 16-byte
//! aligned (8-byte for the 8-byte class): it serves whatever asks for no
//! more than that, which is nearly every Rust type.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

pub struct MiMalloc;

/// mimalloc's plain API gives `layout` its alignment: blocks of 16 bytes
/// and up are 16-byte aligned, the 8-byte ones 8.
#[inline]
fn plain(size: usize, align: usize) -> bool {
    align <= 8 || (align <= 16 && size >= 16 && size.is_multiple_of(16))
}

// SAFETY: every pointer comes from mimalloc and goes back to it; the
// aligned calls serve whatever alignment `plain` does not cover.
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let (size, align) = (layout.size(), layout.align());
        // SAFETY: mimalloc's allocation functions take any size.
        unsafe {
            if plain(size, align) {
                mi::mi_malloc(size).cast()
            } else {
                mi::mi_malloc_aligned(size, align).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let (size, align) = (layout.size(), layout.align());
        // SAFETY: as in `alloc`.
        unsafe {
            if plain(size, align) {
                mi::mi_zalloc(size).cast()
            } else {
                mi::mi_zalloc_aligned(size, align).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (the caller's contract).
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let align = layout.align();
        // SAFETY: `ptr` came from this allocator; mimalloc reallocates a
        // block from either API with either.
        unsafe {
            if plain(new_size, align) {
                mi::mi_realloc(ptr.cast(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast(), new_size, align).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size to 600 bytes and some to 10,000 at every alignment to
    /// 4 KiB, many at once (so that pages fill and refill), each block
    /// aligned, zeroed when asked, writable to its end, and kept through
    /// a realloc.
    #[test]
    fn blocks_are_aligned_whole_and_survive_realloc() {
        let a = MiMalloc;
        for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
            for size in (1..=600).chain([1000, 1024, 2048, 4000, 4096, 10_000]) {
                let layout = Layout::from_size_align(size, align).unwrap();
                let mut held = Vec::new();
                for i in 0..40u8 {
                    // SAFETY: a non-zero size; freed below with its layout.
                    let p = unsafe {
                        if i % 2 == 0 {
                            a.alloc(layout)
                        } else {
                            a.alloc_zeroed(layout)
                        }
                    };
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    // SAFETY: `p` holds `size` bytes.
                    let block = unsafe { std::slice::from_raw_parts_mut(p, size) };
                    if i % 2 == 1 {
                        assert!(block.iter().all(|&b| b == 0), "zeroed");
                    }
                    block.fill(i);
                    held.push((p, i));
                }
                for (p, i) in held {
                    // Odd sizes and multiples of 16 in turn: a block from
                    // one API reallocated by the other, both ways.
                    let new_size = if i % 4 < 2 {
                        size * 2 + 1
                    } else {
                        (size + 16) & !15
                    };
                    // SAFETY: `p` came from `a` with `layout`; non-zero size.
                    let q = unsafe { a.realloc(p, layout, new_size) };
                    assert!(!q.is_null());
                    assert_eq!(q as usize % align, 0, "realloc to {new_size} align {align}");
                    // SAFETY: `q` holds `new_size` >= `size` bytes, the
                    // first `size` copied from `p`.
                    let kept = unsafe { std::slice::from_raw_parts(q, size) };
                    assert!(kept.iter().all(|&b| b == i), "contents kept");
                    let grown = Layout::from_size_align(new_size, align).unwrap();
                    // SAFETY: `q` came from `a` with `grown`.
                    unsafe { a.dealloc(q, grown) };
                }
            }
        }
    }

    #[test]
    fn the_plain_api_is_used_only_where_it_aligns() {
        assert!(plain(24, 8));
        assert!(plain(1, 1));
        assert!(plain(48, 16));
        // Sizes that are not a multiple of 16 with 16-byte alignment (a
        // raw layout; no type has them) and larger alignments go to the
        // aligned calls.
        assert!(!plain(24, 16));
        assert!(!plain(8, 16));
        assert!(!plain(128, 32));
    }
}
