//! Native file dialogs (rfd), and telling a cancelled dialog from one that never opened.
//!
//! rfd answers "nothing chosen" both when the user cancels and when no dialog could be shown
//! (no XDG desktop portal on the session bus, and no zenity to fall back on); it only logs
//! the second. [`native`] keeps what rfd logs on its thread while the dialog runs, so a
//! dialog that never opened becomes an error the user reads (with a path field to type into
//! instead) rather than a click that does nothing.

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::state::Pick;

thread_local! {
    /// rfd's errors on this thread since the last [`capture`] began.
    static ERRORS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// A logger that keeps rfd's errors (and drops every other record, as the app did without a
/// logger).
struct DialogErrors;

impl log::Log for DialogErrors {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Error && m.target().starts_with("rfd")
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let text = record.args().to_string();
            ERRORS.with(|e| e.borrow_mut().push(text));
        }
    }

    fn flush(&self) {}
}

static LOGGER: DialogErrors = DialogErrors;

/// Installs [`DialogErrors`] once; false when another logger was there first (then a dialog
/// that cannot open looks like a cancelled one, as before).
fn install() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    *INSTALLED.get_or_init(|| {
        let ok = log::set_logger(&LOGGER).is_ok();
        if ok {
            log::set_max_level(log::LevelFilter::Error);
        }
        ok
    })
}

/// Runs `dialog` on this thread: its paths, or rfd's reason when it chose nothing and
/// logged an error meanwhile.
pub fn capture(dialog: impl FnOnce() -> Vec<PathBuf>) -> Result<Vec<PathBuf>, String> {
    ERRORS.with(|e| e.borrow_mut().clear());
    let paths = dialog();
    let errors = ERRORS.with(|e| std::mem::take(&mut *e.borrow_mut()));
    if paths.is_empty() && !errors.is_empty() {
        Err(errors.join("; "))
    } else {
        Ok(paths)
    }
}

/// The native dialog for `pick` (blocking: run it on a job thread). `Ok(vec![])` is a
/// cancel; `Err` says why no dialog could open.
pub fn native(pick: Pick) -> Result<Vec<PathBuf>, String> {
    install();
    capture(|| {
        let d = rfd::FileDialog::new();
        match pick {
            Pick::Model => d
                .add_filter("safetensors", &["safetensors"])
                .pick_file()
                .into_iter()
                .collect(),
            Pick::Config => d
                .add_filter("OpenPCDet config", &["yaml", "yml"])
                .pick_file()
                .into_iter()
                .collect(),
            Pick::Scans => d
                .add_filter("scans", &["bin", "pcd"])
                .pick_files()
                .unwrap_or_default(),
            Pick::ScanFolder | Pick::ExportDir | Pick::EvalFolder => {
                d.pick_folder().into_iter().collect()
            }
        }
    })
}

/// What the path field makes of typed text: `~` is the home folder, and a relative path is
/// made absolute against the working directory now (so what is shown is where it points).
pub fn typed_path(text: &str) -> Option<PathBuf> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let home = || std::env::var_os("HOME").map(PathBuf::from);
    let path = match text.strip_prefix("~") {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => {
            home()?.join(rest.trim_start_matches('/'))
        }
        _ => PathBuf::from(text),
    };
    std::path::absolute(&path).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dialog_that_logged_an_error_and_chose_nothing_failed() {
        install();
        let failed = capture(|| {
            log::error!(target: "rfd::backend", "Failed to pick file with zenity: not found");
            Vec::new()
        });
        assert_eq!(
            failed,
            Err("Failed to pick file with zenity: not found".to_string())
        );
        // A cancel logs nothing; a choice is a choice whatever was logged.
        assert_eq!(capture(Vec::new), Ok(Vec::new()));
        let chosen = capture(|| {
            log::error!(target: "rfd", "portal: timeout");
            vec![PathBuf::from("/a.safetensors")]
        });
        assert_eq!(chosen, Ok(vec![PathBuf::from("/a.safetensors")]));
        // Other crates' errors are not the dialog's.
        let other = capture(|| {
            log::error!(target: "wgpu_core", "something");
            Vec::new()
        });
        assert_eq!(other, Ok(Vec::new()));
    }

    #[test]
    fn typed_paths_are_absolute() {
        assert_eq!(typed_path("  "), None);
        assert_eq!(typed_path("/a/b.bin"), Some(PathBuf::from("/a/b.bin")));
        let rel = typed_path("x/y").unwrap();
        assert!(rel.is_absolute() && rel.ends_with("x/y"), "{rel:?}");
        if let Some(home) = std::env::var_os("HOME") {
            assert_eq!(typed_path("~/e"), Some(PathBuf::from(home).join("e")));
        }
    }
}
