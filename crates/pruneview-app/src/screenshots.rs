//! Headless rendering of the whole app (`pruneview screenshots`, and the UI tests): the
//! real app state and panels in an egui_kittest harness on a wgpu device, which works
//! without a display (Mesa's software Vulkan is enough).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use eframe::egui;
use eframe::egui_wgpu::{self, RenderState};
use egui_kittest::Harness;
use egui_kittest::wgpu::{WgpuTestRenderer, create_render_state, default_wgpu_setup};

use super::state::Settings;
use super::ui::PruneviewApp;
use super::view3d::Projection;
use super::work::OpenRequest;

/// The image crate the harness renders with (tests read the PNGs the app writes with it).
pub use image;

/// The window size the screenshots and tests use.
pub const WINDOW: egui::Vec2 = egui::vec2(1600.0, 1000.0);

/// A wgpu device for headless rendering (prefers a software adapter, as the tests need).
pub fn render_state() -> RenderState {
    create_render_state(
        default_wgpu_setup(),
        egui_wgpu::RendererOptions::PREDICTABLE,
    )
}

/// The app in a harness drawing into `rs`.
pub fn harness(
    app: PruneviewApp,
    rs: RenderState,
    size: egui::Vec2,
) -> Harness<'static, PruneviewApp> {
    let draw_rs = rs.clone();
    Harness::builder()
        .with_size(size)
        .with_accessibility_check(false)
        .renderer(WgpuTestRenderer::from_render_state(rs))
        .build_ui_state(
            move |ui, app: &mut PruneviewApp| app.show(ui, Some(&draw_rs)),
            app,
        )
}

/// Steps the harness until `done(app)` or `timeout` (jobs run on their own threads; each step
/// applies what they finished).
pub fn step_until(
    h: &mut Harness<'_, PruneviewApp>,
    timeout: Duration,
    what: &str,
    done: impl Fn(&PruneviewApp) -> bool,
) -> Result<()> {
    let start = Instant::now();
    loop {
        h.step();
        if done(h.state()) {
            return Ok(());
        }
        if start.elapsed() > timeout {
            let msgs: Vec<String> = h
                .state()
                .state
                .messages
                .iter()
                .map(|m| m.text.clone())
                .collect();
            bail!("timed out after {timeout:?} waiting for {what}; messages: {msgs:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Where a pointer on the horizontal slider labelled `label` asks for `fraction` of its range
/// (0 its minimum, 1 its maximum): egui's rail is the widget less a handle radius (a 2.5th of
/// its height) at each end.
pub fn slider_point(h: &Harness<'_, PruneviewApp>, label: &str, fraction: f32) -> egui::Pos2 {
    use egui_kittest::kittest::Queryable;
    let rect = h
        .get_by_role_and_label(egui::accesskit::Role::Slider, label)
        .rect();
    let r = rect.height() / 2.5;
    egui::pos2(
        egui::lerp(
            (rect.left() + r)..=(rect.right() - r),
            fraction.clamp(0.0, 1.0),
        ),
        rect.center().y,
    )
}

/// Drags the slider labelled `label` with the pointer from its handle at `from` to `to` (both
/// fractions of its range) over a few frames, and releases it there. `after_release` are
/// events in the release's frame after it (a fast release: the pointer already moving on).
pub fn drag_slider(
    h: &mut Harness<'_, PruneviewApp>,
    label: &str,
    from: f32,
    to: f32,
    after_release: &[egui::Event],
) {
    let button = |pos, pressed| egui::Event::PointerButton {
        pos,
        button: egui::PointerButton::Primary,
        pressed,
        modifiers: egui::Modifiers::default(),
    };
    let start = slider_point(h, label, from);
    h.input_mut().events.push(egui::Event::PointerMoved(start));
    h.step();
    h.input_mut().events.push(button(start, true));
    h.step();
    let steps = 6;
    let mut end = start;
    for i in 1..=steps {
        let f = from + (to - from) * i as f32 / steps as f32;
        end = slider_point(h, label, f);
        h.input_mut().events.push(egui::Event::PointerMoved(end));
        h.step();
    }
    h.input_mut().events.push(button(end, false));
    h.input_mut().events.extend(after_release.iter().cloned());
    h.step();
}

/// The demo with only the first `n` bundled synthetic scans (quicker curves) and the real
/// KITTI frame 000008.
pub fn demo_subset(n: usize) -> Result<OpenRequest> {
    let mut req = super::ui::demo_request().context("the bundled demo (assets/) is missing")?;
    let kitti = req
        .scans
        .iter()
        .find(|p| p.ends_with("kitti/velodyne/000008.bin"))
        .cloned();
    req.scans
        .retain(|p| p.to_string_lossy().contains("synthetic"));
    req.scans.truncate(n);
    req.scans.extend(kitti);
    Ok(req)
}

/// Renders the main views of the demo to `out`: the overview (3D view, curves, frontier,
/// allocation), the Evaluation window, the bird's-eye view of a real KITTI scan and the
/// export dialog.
pub fn render_all(out: &Path, scans: usize, log: &dyn Fn(&str)) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let rs = render_state();
    log(&format!("adapter: {}", rs.adapter.get_info().name));
    let settings = Settings {
        keep: 0.35,
        score_threshold: 0.3,
        ..Settings::default()
    };
    let app = PruneviewApp::new(settings, &egui::Context::default());
    let mut h = harness(app, rs, WINDOW);
    h.state_mut().state.open(demo_subset(scans)?);
    log("computing the curves and the frontier...");
    let long = Duration::from_secs(900);
    step_until(&mut h, long, "the frontier", |a| a.state.current.is_some())?;
    // A synthetic scan with several labelled objects.
    h.state_mut().state.selected_scan = 3;
    log("pruned detections...");
    step_until(&mut h, long, "the pruned detections", |a| {
        a.state.pruned_is_current()
    })?;
    h.run_steps(3);
    let mut written = Vec::new();
    let mut save = |h: &mut Harness<'_, PruneviewApp>, name: &str| -> Result<()> {
        let img = h.render().map_err(|e| anyhow::anyhow!("render: {e}"))?;
        let p = out.join(name);
        img.save(&p)
            .with_context(|| format!("{}: cannot write", p.display()))?;
        log(&format!("wrote {}", p.display()));
        written.push(p);
        Ok(())
    };
    save(&mut h, "overview.png")?;

    // The Evaluation window: per-class AP of the dense and the pruned model on a held-out
    // synthetic set, and AP against the budget.
    log("evaluating...");
    h.state_mut().state.evaluate();
    h.state_mut().show_evaluation_window(true);
    step_until(&mut h, long, "the evaluation", |a| {
        !a.state.eval_points.is_empty()
    })?;
    h.run_steps(3);
    save(&mut h, "evaluated.png")?;
    h.state_mut().show_evaluation_window(false);

    let last = h.state().state.scans.len() - 1;
    h.state_mut().state.selected_scan = last;
    h.state_mut().state.settings.projection = Projection::BirdsEye;
    h.state_mut().view.set_projection(Projection::BirdsEye);
    step_until(&mut h, long, "the pruned detections", |a| {
        a.state.pruned_is_current()
    })?;
    h.run_steps(3);
    save(&mut h, "birds-eye-kitti.png")?;

    h.state_mut().open_export_dialog();
    h.run_steps(3);
    save(&mut h, "export-dialog.png")?;
    Ok(written)
}
