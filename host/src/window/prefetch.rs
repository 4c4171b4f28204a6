//! A hint to the processor to bring a value's cache line in, for state that is read again
//! soon at a place no access pattern predicts (the head of a free list).
//!
//! Invariant: a prefetch never changes what a program computes, only when memory is read.

/// Asks the processor to load the cache line of `item` without waiting for it; a no-op
/// where there is no such instruction.
#[inline(always)]
pub(super) fn prefetch<T>(item: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch only hints the cache and never faults; `item` is a valid
    // reference, and SSE is part of x86-64.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            std::ptr::from_ref(item).cast(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = item;
}
