//! The desktop sparsity explorer (eframe/egui). The app only orchestrates: model work runs in
//! background jobs ([`jobs`], [`work`]), [`state`] reacts to results and user choices, and
//! [`ui`] draws plain state. The 3D view ([`view3d`]) renders with kiss3d on eframe's own
//! wgpu device.

pub mod cache;
pub mod dialogs;
pub mod input;
pub mod jobs;
pub mod plots;
pub mod screenshots;
pub mod state;
pub mod ui;
pub mod view3d;
pub mod work;

use std::path::PathBuf;
use std::sync::Arc;

use eframe::egui;

pub use state::{Settings, State};
pub use ui::PruneviewApp;
use work::OpenRequest;

/// Opens the window. With no request it reopens the last files when they still exist, else
/// the bundled demo; either way the curves start at once.
pub fn run(request: Option<OpenRequest>) -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("pruneview")
            .with_inner_size([1600.0, 1000.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    eframe::run_native(
        "pruneview",
        options,
        Box::new(move |cc| {
            let settings: Settings = cc
                .storage
                .and_then(|s| eframe::get_value(s, eframe::APP_KEY))
                .unwrap_or_default();
            let mut app = PruneviewApp::new(settings, &cc.egui_ctx);
            app.state.cache = cache::Cache::default_location().map(Arc::new);
            if let Some(req) = request.or_else(|| startup_request(&app.state.settings)) {
                app.state.open(req);
            }
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "cannot open the window: {e} (without a display, use the subcommands: pruneview --help)"
        )
    })
}

/// The last files if they all still exist, else the demo.
fn startup_request(settings: &Settings) -> Option<OpenRequest> {
    let exists = |p: &PathBuf| p.exists();
    settings
        .open
        .clone()
        .filter(|o| exists(&o.weights) && o.config.iter().all(exists) && o.scans.iter().all(exists))
        .or_else(ui::demo_request)
}
