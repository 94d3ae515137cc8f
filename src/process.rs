//! What the process sets for itself before it serves: one TLS crypto backend for the whole
//! process, the allocator's behaviour, and the open-file limit.

/// The TLS stacks of the two Google crates enable different rustls crypto backends; with both
/// compiled in, rustls cannot pick one and the first HTTPS client panics. Pick one, once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// mimalloc keeps freed memory for a while and backs it with huge pages, which at 1,000
/// connections doubles the resident set for no measurable speed (benches/load.rs, paired runs):
/// return freed memory at once (huge pages are off at build time, the `no_thp` feature).
pub fn tune_allocator() {
    // The position of `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (mimalloc.h); the
    // test below pins it against the option's documented default.
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets one of mimalloc's documented options; no memory is touched.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0) };
}

/// Every connection is a file descriptor: the soft open-file limit (often 1,024) would let a
/// few hundred idle or slow clients stop the server from accepting anything, while the hard
/// limit is usually far higher. Raises the soft limit to the hard one and logs how many
/// connections that allows (what the process itself holds open besides is small).
pub fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    const OWN_FILES: u64 = 64;
    let limit = getrlimit(Resource::Nofile);
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    let (from, to) = (limit.current, raised.current);
    let now = match setrlimit(Resource::Nofile, raised) {
        Ok(()) => to,
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
            from
        }
    };
    match now {
        Some(files) => tracing::info!(
            open_files = files,
            raised_from = from,
            connections = files.saturating_sub(OWN_FILES),
            "open-file limit: about {} connections at once",
            files.saturating_sub(OWN_FILES)
        ),
        None => tracing::info!("open-file limit: none"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_option_tune_allocator_sets_is_the_purge_delay() {
        // In the mimalloc this crate builds (v3), `purge_delay` defaults to 1000 ms and the
        // options beside it to 1 and 0: a wrong position would show here.
        // SAFETY: reads an option.
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(15) }, 1000);
    }
}
