//! The process's allocator: jemalloc, set here rather than in `main` so that the tests and
//! benches run the relay on the allocator it ships with.
//!
//! Measured in the ingest bench against glibc's malloc, alternating in one sitting: durable
//! intake about a quarter faster (see the README's Performance section). glibc spends that time
//! in malloc and free across many threads, and keeps fragments of freed memory.

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Read by jemalloc when it starts (the crate prefixes its symbols with `_rjem_`); the
/// environment variable `_RJEM_MALLOC_CONF` still overrides it.
/// - `background_thread`: unused pages are returned by jemalloc's own thread, not in the
///   middle of a request.
/// - `dirty_decay_ms:1000, muzzy_decay_ms:0`: freed pages go back to the system within about a
///   second (the default waits ten), so memory follows load down.
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: ConfString =
    ConfString(c"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0".as_ptr());

/// A C string pointer, the shape jemalloc reads `malloc_conf` as.
#[repr(transparent)]
struct ConfString(*const std::ffi::c_char);

// SAFETY: it points at a string literal, which is never written.
unsafe impl Sync for ConfString {}
