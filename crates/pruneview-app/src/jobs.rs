//! The app's one job system: every piece of model work (loading, probes, forward passes,
//! evaluation, export) runs on its own thread, reports progress through atomics and returns
//! its result as a value. The UI thread only polls, so it never waits on model work.
//!
//! Results are generic so the job system knows nothing of models; a job fails with a
//! message meant for the user (it already names the file and the problem) or is cancelled.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pruneview_core::progress::Control;

/// What a job is for. Starting a job of a kind that [`JobKind::supersedes`] cancels the
/// running one (a new budget makes the old pruned forward stale).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobKind {
    LoadModel,
    LoadScans,
    DenseForward,
    Curves,
    MeasuredCurves,
    Frontier,
    PrunedForward,
    Eval,
    Recover,
    Export,
    Dialog,
}

impl JobKind {
    /// Whether a newer job of this kind makes a running one useless.
    pub fn supersedes(self) -> bool {
        !matches!(self, JobKind::Export | JobKind::Dialog)
    }

    /// Whether each progress step redraws the window. Not for the pruned forward: it is
    /// over in well under a second, and a redraw per BatchNorm it repairs took CPU from it
    /// (the jobs panel still moves with the periodic redraw while jobs run).
    pub fn wakes_on_progress(self) -> bool {
        !matches!(self, JobKind::PrunedForward)
    }
}

/// Progress shared between a job's thread and the UI.
#[derive(Default)]
pub struct Progress {
    done: AtomicUsize,
    total: AtomicUsize,
    message: Mutex<String>,
}

impl Progress {
    pub fn set(&self, done: usize, total: usize, message: &str) {
        self.done.store(done, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
        if let Ok(mut m) = self.message.lock() {
            m.clear();
            m.push_str(message);
        }
    }

    /// (done, total, message); total 0 means "not known yet".
    pub fn get(&self) -> (usize, usize, String) {
        let message = self.message.lock().map(|m| m.clone()).unwrap_or_default();
        (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
            message,
        )
    }
}

/// What a job's body gets: the cancel flag, the progress sink and a way to wake the UI.
#[derive(Clone)]
pub struct JobCtl {
    pub cancel: Arc<AtomicBool>,
    pub progress: Arc<Progress>,
    wake: Arc<dyn Fn() + Send + Sync>,
    /// Whether [`Self::step`] wakes the UI ([`JobKind::wakes_on_progress`]).
    wake_on_step: bool,
}

impl JobCtl {
    /// A control for running a job body directly (benchmarks, scripts): never cancelled
    /// unless its flag is set, progress goes nowhere.
    pub fn detached() -> JobCtl {
        JobCtl {
            cancel: Arc::new(AtomicBool::new(false)),
            progress: Arc::new(Progress::default()),
            wake: Arc::new(|| {}),
            wake_on_step: false,
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Reports progress and asks the UI to redraw (for kinds that [`JobKind::wakes_on_progress`]).
    pub fn step(&self, done: usize, total: usize, message: &str) {
        self.progress.set(done, total, message);
        if self.wake_on_step {
            (self.wake)();
        }
    }

    /// `Err(Cancelled)` once the job was cancelled.
    pub fn check(&self) -> JobResult<()> {
        if self.is_cancelled() {
            Err(JobError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Runs `f` with the library's [`Control`] wired to this job.
    pub fn with_control<T>(&self, f: impl FnOnce(&Control) -> T) -> T {
        let on_step = |done: usize, total: usize, what: &str| self.step(done, total, what);
        f(&Control::new(&self.cancel, &on_step))
    }
}

pub use pruneview_core::session::Error as JobError;

/// A job's outcome: its value, or why there is none.
pub type JobResult<T> = Result<T, JobError>;

/// A running job as the UI lists it.
pub struct Job<T> {
    pub id: u64,
    pub kind: JobKind,
    pub title: String,
    pub started: Instant,
    ctl: JobCtl,
    rx: Receiver<JobResult<T>>,
}

impl<T> Job<T> {
    pub fn progress(&self) -> (usize, usize, String) {
        self.ctl.progress.get()
    }

    /// Fraction done, when the total is known.
    pub fn fraction(&self) -> Option<f32> {
        let (done, total, _) = self.progress();
        (total > 0).then(|| (done as f32 / total as f32).clamp(0.0, 1.0))
    }

    /// Time left, extrapolated from the steps done so far.
    pub fn eta(&self) -> Option<Duration> {
        let (done, total, _) = self.progress();
        eta(self.started.elapsed(), done, total)
    }

    pub fn cancel(&self) {
        self.ctl.cancel.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelling(&self) -> bool {
        self.ctl.is_cancelled()
    }
}

/// Linear extrapolation: `elapsed * (total - done) / done`.
pub fn eta(elapsed: Duration, done: usize, total: usize) -> Option<Duration> {
    if done == 0 || total == 0 || done > total {
        return None;
    }
    Some(elapsed.mul_f64((total - done) as f64 / done as f64))
}

/// A finished job.
pub struct Finished<T> {
    pub id: u64,
    pub kind: JobKind,
    pub title: String,
    pub elapsed: Duration,
    pub result: JobResult<T>,
}

/// The running jobs.
pub struct Jobs<T> {
    running: Vec<Job<T>>,
    next_id: u64,
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl<T: Send + 'static> Jobs<T> {
    /// `wake` is called from job threads whenever the UI should redraw (egui's
    /// `Context::request_repaint`).
    pub fn new(wake: Arc<dyn Fn() + Send + Sync>) -> Self {
        Jobs {
            running: Vec::new(),
            next_id: 1,
            wake,
        }
    }

    /// Starts `body` on its own thread. A running job of the same kind is cancelled first
    /// when the kind supersedes.
    pub fn spawn(
        &mut self,
        kind: JobKind,
        title: impl Into<String>,
        body: impl FnOnce(&JobCtl) -> JobResult<T> + Send + 'static,
    ) -> u64 {
        if kind.supersedes() {
            self.cancel_kind(kind);
        }
        let id = self.next_id;
        self.next_id += 1;
        let ctl = JobCtl {
            cancel: Arc::new(AtomicBool::new(false)),
            progress: Arc::new(Progress::default()),
            wake: self.wake.clone(),
            wake_on_step: kind.wakes_on_progress(),
        };
        let (tx, rx) = channel();
        let thread_ctl = ctl.clone();
        let title = title.into();
        let spawned = std::thread::Builder::new()
            .name(format!("job-{id}"))
            .spawn(move || {
                let outcome =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&thread_ctl)));
                let result = match outcome {
                    Ok(r) if thread_ctl.is_cancelled() => r.and(Err(JobError::Cancelled)),
                    Ok(r) => r,
                    Err(p) => Err(format!("internal error: {}", panic_message(&p)).into()),
                };
                let _ = tx.send(result);
                (thread_ctl.wake)();
            });
        let rx = match spawned {
            Ok(_) => rx,
            Err(e) => {
                let (tx, failed) = channel();
                let _ = tx.send(Err(format!("cannot start a thread: {e}").into()));
                failed
            }
        };
        self.running.push(Job {
            id,
            kind,
            title,
            started: Instant::now(),
            ctl,
            rx,
        });
        id
    }

    /// Takes the jobs that have finished, in start order.
    pub fn poll(&mut self) -> Vec<Finished<T>> {
        let mut done = Vec::new();
        self.running.retain(|job| match job.rx.try_recv() {
            Ok(result) => {
                done.push(Finished {
                    id: job.id,
                    kind: job.kind,
                    title: job.title.clone(),
                    elapsed: job.started.elapsed(),
                    result,
                });
                false
            }
            Err(TryRecvError::Empty) => true,
            Err(TryRecvError::Disconnected) => {
                done.push(Finished {
                    id: job.id,
                    kind: job.kind,
                    title: job.title.clone(),
                    elapsed: job.started.elapsed(),
                    result: Err("the job stopped without a result".into()),
                });
                false
            }
        });
        done
    }

    pub fn running(&self) -> &[Job<T>] {
        &self.running
    }

    pub fn is_running(&self, kind: JobKind) -> bool {
        self.running
            .iter()
            .any(|j| j.kind == kind && !j.is_cancelling())
    }

    pub fn is_idle(&self) -> bool {
        self.running.is_empty()
    }

    pub fn cancel(&self, id: u64) {
        if let Some(j) = self.running.iter().find(|j| j.id == id) {
            j.cancel();
        }
    }

    pub fn cancel_kind(&self, kind: JobKind) {
        for j in self.running.iter().filter(|j| j.kind == kind) {
            j.cancel();
        }
    }

    pub fn cancel_all(&self) {
        for j in &self.running {
            j.cancel();
        }
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a job panicked".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jobs() -> Jobs<u32> {
        Jobs::new(Arc::new(|| {}))
    }

    fn wait_all(j: &mut Jobs<u32>) -> Vec<Finished<u32>> {
        let start = Instant::now();
        let mut out = Vec::new();
        while !j.is_idle() {
            out.extend(j.poll());
            assert!(start.elapsed() < Duration::from_secs(20), "jobs hang");
            std::thread::sleep(Duration::from_millis(2));
        }
        out
    }

    #[test]
    fn results_errors_and_panics_come_back_as_values() {
        let mut j = jobs();
        j.spawn(JobKind::Export, "ok", |_| Ok(7));
        j.spawn(JobKind::Export, "err", |_| {
            Err("bad.safetensors: truncated".into())
        });
        j.spawn(JobKind::Export, "panic", |_| panic!("boom"));
        let mut done = wait_all(&mut j);
        done.sort_by_key(|f| f.id);
        assert_eq!(done[0].result, Ok(7));
        assert_eq!(
            done[1].result,
            Err(JobError::Failed("bad.safetensors: truncated".into()))
        );
        let panicked = done[2].result.as_ref().unwrap_err().to_string();
        assert!(panicked.contains("boom"), "{panicked}");
    }

    #[test]
    fn a_new_job_cancels_a_stale_one_of_its_kind() {
        let mut j = jobs();
        let first = j.spawn(JobKind::PrunedForward, "old budget", |ctl| {
            while !ctl.is_cancelled() {
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(1)
        });
        let second = j.spawn(JobKind::PrunedForward, "new budget", |_| Ok(2));
        let done = wait_all(&mut j);
        let get = |id| done.iter().find(|f| f.id == id).unwrap();
        assert_eq!(get(first).result, Err(JobError::Cancelled));
        assert_eq!(get(second).result, Ok(2));
    }

    #[test]
    fn progress_and_eta() {
        let mut j = jobs();
        let gate = Arc::new(AtomicBool::new(false));
        let g = gate.clone();
        j.spawn(JobKind::Curves, "probes", move |ctl| {
            ctl.step(1, 4, "scan 1");
            while !g.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(0)
        });
        let start = Instant::now();
        while j.running()[0].fraction().is_none() {
            assert!(start.elapsed() < Duration::from_secs(20));
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(j.running()[0].fraction(), Some(0.25));
        assert_eq!(j.running()[0].progress().2, "scan 1");
        assert!(j.is_running(JobKind::Curves));
        gate.store(true, Ordering::Relaxed);
        wait_all(&mut j);
        assert_eq!(
            eta(Duration::from_secs(10), 1, 4),
            Some(Duration::from_secs(30))
        );
        assert_eq!(eta(Duration::from_secs(10), 0, 4), None);
    }
}
