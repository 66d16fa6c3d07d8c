//! Reusable per-thread scratch memory, so a forward pass does not allocate big buffers per layer.
//!
//! Every kernel task (one rayon job: a band of output rows, a block of pixels) borrows a
//! thread-local buffer that grows to the largest size it was asked for and is then reused.
//! If the buffer is already borrowed on this thread (a nested call, e.g. a layer run inside
//! another layer's rayon job), the caller gets a fresh allocation instead of a panic.
//! Buffers are 64-byte aligned so that vector loads do not straddle cache lines.

use std::cell::RefCell;

/// One cache line of f32s; the unit of allocation (gives 64-byte alignment).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

const ZERO_LINE: Line = Line([0.0; 16]);

thread_local! {
    static TASK: RefCell<Vec<Line>> = const { RefCell::new(Vec::new()) };
}

fn as_f32(lines: &mut [Line], len: usize) -> &mut [f32] {
    // SAFETY: `Line` is `repr(C)` over `[f32; 16]`, so a slice of lines is a slice of f32s
    // 16 times as long, with the same (stricter) alignment.
    let all = unsafe {
        std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast::<f32>(), lines.len() * 16)
    };
    &mut all[..len]
}

/// Runs `f` with a 64-byte aligned scratch slice of `len` f32s. The contents are arbitrary
/// (left over from earlier use, always initialised): callers must write before they read.
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let lines = len.div_ceil(16) + 1;
    TASK.with(|cell| match cell.try_borrow_mut() {
        Ok(mut v) => {
            if v.len() < lines {
                v.resize(lines, ZERO_LINE);
            }
            f(as_f32(&mut v, len))
        }
        Err(_) => {
            let mut v = vec![ZERO_LINE; lines];
            f(as_f32(&mut v, len))
        }
    })
}

/// Frees this thread's scratch buffer (e.g. after a one-off large model run). Other rayon
/// worker threads keep theirs; call it inside `rayon::broadcast` to free them all.
pub fn release_scratch() {
    TASK.with(|cell| {
        if let Ok(mut v) = cell.try_borrow_mut() {
            *v = Vec::new();
        }
    });
}

/// A heap buffer of f32 with 64-byte alignment, for packed weights that live with a layer.
#[derive(Clone, Default)]
pub(crate) struct AlignedBuf {
    lines: Vec<Line>,
    len: usize,
}

impl AlignedBuf {
    /// A zero-filled buffer of `len` f32s.
    pub(crate) fn zeros(len: usize) -> Self {
        AlignedBuf {
            lines: vec![ZERO_LINE; len.div_ceil(16)],
            len,
        }
    }

    pub(crate) fn as_slice(&self) -> &[f32] {
        // SAFETY: see `as_f32`; `len <= lines.len() * 16`.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<f32>(), self.len) }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [f32] {
        let len = self.len;
        as_f32(&mut self.lines, len)
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBuf({} f32)", self.len)
    }
}

/// A raw pointer that may be shared between rayon jobs which write disjoint parts of one
/// output buffer. Each use site documents why its writes do not overlap.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub(crate) *mut f32);

impl SendPtr {
    /// The pointer. (A method, so closures capture the whole `Send` wrapper, not the field.)
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}
// SAFETY: only used for disjoint writes from parallel jobs (see each use site).
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}
