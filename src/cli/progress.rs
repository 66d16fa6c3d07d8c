//! Progress bars (indicatif, with ETA) and Ctrl-C cancellation for long subcommands.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressStyle};

use pruneview::progress::Control;

/// Ctrl-C sets the flag (a second Ctrl-C exits at once).
pub(super) fn cancel_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    let _ = ctrlc::set_handler(move || {
        if f.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ncancelling (Ctrl-C again to quit at once)...");
    });
    flag
}

pub(super) fn bar(prefix: &str) -> ProgressBar {
    let pb = ProgressBar::new(1);
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix:>9} [{elapsed_precise}] {wide_bar} {pos}/{len} ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_prefix(prefix.to_string());
    pb
}

/// Runs `f` with a progress bar and the Ctrl-C flag; an error after Ctrl-C is reported as
/// the cancellation it is (nothing has been written then).
pub(super) fn with_progress<T, E: Into<anyhow::Error>>(
    prefix: &str,
    cancel: &AtomicBool,
    f: impl FnOnce(&Control) -> Result<T, E>,
) -> Result<T> {
    let pb = bar(prefix);
    let on_step = |done: usize, total: usize, what: &str| {
        pb.set_length(total as u64);
        pb.set_position(done as u64);
        pb.set_message(what.to_string());
    };
    let r = f(&Control::new(cancel, &on_step));
    pb.finish_and_clear();
    match r {
        Ok(v) => Ok(v),
        Err(_) if cancel.load(Ordering::Relaxed) => bail!("cancelled; nothing was written"),
        Err(e) => Err(e.into()),
    }
}
