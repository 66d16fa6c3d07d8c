//! One progress-and-cancel type for all long work (curves, recovery, evaluation, synthesis):
//! the CLI wires it to an indicatif bar and Ctrl-C, the app to a job's progress row and its
//! cancel button, tests and benches use [`Control::quiet`].

use std::sync::atomic::{AtomicBool, Ordering};

/// A progress callback: (steps done, total steps, what was done).
pub type OnStep<'a> = dyn Fn(usize, usize, &str) + Sync + 'a;

/// Progress reporting and cancellation for long computations.
#[derive(Clone, Copy)]
pub struct Control<'a> {
    pub cancel: &'a AtomicBool,
    /// Called after each step with (steps done, total steps, what was done).
    pub on_step: &'a OnStep<'a>,
}

/// The work was cancelled (every module's error type has a variant it converts into).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

fn no_step(_: usize, _: usize, _: &str) {}

static NEVER: AtomicBool = AtomicBool::new(false);

impl<'a> Control<'a> {
    pub fn new(cancel: &'a AtomicBool, on_step: &'a OnStep<'a>) -> Control<'a> {
        Control { cancel, on_step }
    }

    /// Never cancelled, reports nowhere (tests, benches, scripts).
    pub fn quiet() -> Control<'static> {
        Control {
            cancel: &NEVER,
            on_step: &no_step,
        }
    }

    /// The same cancel flag without progress (inner passes of a larger step).
    pub fn silenced(&self) -> Control<'a> {
        Control {
            cancel: self.cancel,
            on_step: &no_step,
        }
    }

    /// The same progress sink with another cancel flag.
    pub fn with_cancel<'b>(self, cancel: &'b AtomicBool) -> Control<'b>
    where
        'a: 'b,
    {
        Control {
            cancel,
            on_step: self.on_step,
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// `Err(Cancelled)` once the user asked to stop; `?` turns it into the caller's error.
    pub fn check(&self) -> Result<(), Cancelled> {
        if self.is_cancelled() {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }

    pub fn step(&self, done: usize, total: usize, what: &str) {
        (self.on_step)(done, total, what)
    }
}
