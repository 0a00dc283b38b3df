//! Integration tests of rbk-compiler: one binary, one module per area.

mod instructions;
mod limits;
mod lint;
mod lower;
mod parser;
mod shell;

/// The repository's `tests/` folder, which holds BuildKit's conformance
/// data under `conformance/`.
pub fn tests_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests")
}

/// Counts the bytes each thread allocates, so a test can tell linear from
/// quadratic memory without timing anything.
#[allow(unsafe_code)] // the counting allocator; each block says why it is sound
mod alloc_count {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static ALLOCATED: Cell<u64> = const { Cell::new(0) };
    }

    pub struct Counting;

    // SAFETY: every call is passed to the system allocator unchanged; the
    // counter is a const-initialised thread-local Cell (no allocation).
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = ALLOCATED.try_with(|c| c.set(c.get() + layout.size() as u64));
            // SAFETY: the caller's contract is System's.
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: the caller's contract is System's.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    /// Bytes allocated by this thread so far.
    pub fn allocated() -> u64 {
        ALLOCATED.with(Cell::get)
    }
}
pub use alloc_count::allocated;
