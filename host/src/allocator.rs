//! How the process's allocator treats large blocks.
//!
//! glibc's malloc raises its mmap threshold (up to 32 MiB) each time a mapped block is
//! freed. After that, growing tables (window slots and accumulators, key arenas, hash
//! indexes: tens of MiB at a million open windows) are reallocated inside the heap, and
//! every outgrown copy stays resident as a hole the heap cannot give back. A fixed
//! threshold keeps every block of [`LARGE_BLOCK`] or more in a mapping of its own, which
//! grows in place and goes back to the system when freed: a million windows, one per key,
//! hold ~83 bytes each instead of ~97.
//!
//! Invariant: [`keep_large_blocks_mapped`] runs once, at the start of the process, before
//! other threads allocate; elsewhere than glibc it does nothing.

/// Blocks of this many bytes or more get a mapping of their own.
pub const LARGE_BLOCK: usize = 1 << 20;

/// Fixes the allocator's mmap threshold at [`LARGE_BLOCK`] (see the module doc).
pub fn keep_large_blocks_mapped() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes a malloc tunable; it is called before other threads
    // start, and glibc serialises it with allocation in any case.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, LARGE_BLOCK as libc::c_int);
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use std::hint::black_box;
    use std::process::Command;

    /// Runs the `child` test in a process of its own (the allocator's state is the
    /// process's), with or without the fixed threshold; returns whether a 4 MiB block
    /// got a mapping of its own after a 16 MiB one was freed.
    fn own_mapping_after_a_larger_block_is_freed(fixed: bool) -> bool {
        let output = Command::new(std::env::current_exe().unwrap())
            .args([
                "allocator::tests::child",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env("EDDY_TEST_FIXED_THRESHOLD", if fixed { "1" } else { "0" })
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{out}");
        out.contains("own mapping: true")
    }

    #[test]
    #[ignore = "run by large_blocks_keep_a_mapping_of_their_own, in a process of its own"]
    fn child() {
        if std::env::var("EDDY_TEST_FIXED_THRESHOLD").as_deref() == Ok("1") {
            super::keep_large_blocks_mapped();
        }
        // SAFETY: mallinfo2 only reads malloc's counters.
        let mapped = || unsafe { libc::mallinfo2() }.hblkhd;
        drop(black_box(vec![1u8; 16 << 20]));
        let before = mapped();
        let block = black_box(vec![1u8; 4 << 20]);
        let own = mapped() >= before + (4 << 20);
        drop(block);
        println!("own mapping: {own}");
    }

    #[test]
    fn large_blocks_keep_a_mapping_of_their_own() {
        assert!(
            !own_mapping_after_a_larger_block_is_freed(false),
            "glibc's default raises the threshold: the block is carved from the heap"
        );
        assert!(own_mapping_after_a_larger_block_is_freed(true));
    }
}
