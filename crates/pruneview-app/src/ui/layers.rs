//! The layer table (sortable, one row per prunable layer) and the selected layer's constraints.

use eframe::egui;
use pruneview_core::prune::alloc::Constraint;
use pruneview_core::session::model::LoadedModel;

use super::{PruneviewApp, si};

/// The layer table's sort column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SortKey {
    Order,
    Name,
    Params,
    Flops,
    Sparsity,
}

impl PruneviewApp {
    pub(super) fn layer_table(&mut self, ui: &mut egui::Ui, m: &LoadedModel) {
        // The FLOPs the budget panel and report.csv count (see State::layer_flops).
        let flops = self.state.layer_flops();
        let flops_of = |i: usize| flops.as_ref().and_then(|f| f.flops[i]).unwrap_or(0.0);
        let sparsity = self.current_sparsity();
        let mut rows: Vec<usize> = (0..m.layers.len()).collect();
        let key = |i: &usize| -> f64 {
            let l = &m.layers[*i];
            match self.ui.sort {
                SortKey::Order | SortKey::Name => *i as f64,
                SortKey::Params => l.params as f64,
                SortKey::Flops => flops_of(*i),
                SortKey::Sparsity => sparsity.as_ref().map_or(0.0, |s| s[*i]),
            }
        };
        if self.ui.sort == SortKey::Name {
            rows.sort_by(|a, b| m.layers[*a].name.cmp(&m.layers[*b].name));
        } else {
            rows.sort_by(|a, b| key(a).total_cmp(&key(b)));
        }
        if self.ui.descending {
            rows.reverse();
        }
        ui.label("Layers (click a header to sort, a row to constrain it)");
        let constrained = self.state.settings.constraints.len();
        ui.horizontal(|ui| {
            ui.label(format!("{constrained} layer(s) constrained"));
            if ui
                .add_enabled(constrained > 0, egui::Button::new("reset constraints"))
                .on_hover_text("unlock every layer and clear every min / max sparsity")
                .clicked()
            {
                self.state.reset_constraints();
            }
        });
        egui::Grid::new("layers")
            .striped(true)
            .num_columns(6)
            .show(ui, |ui| {
                for (label, k) in [
                    ("#", SortKey::Order),
                    ("layer", SortKey::Name),
                    ("params", SortKey::Params),
                    ("FLOPs", SortKey::Flops),
                    ("sparsity", SortKey::Sparsity),
                ] {
                    let arrow = if self.ui.sort == k {
                        if self.ui.descending { " v" } else { " ^" }
                    } else {
                        ""
                    };
                    if ui.button(format!("{label}{arrow}")).clicked() {
                        if self.ui.sort == k {
                            self.ui.descending = !self.ui.descending;
                        } else {
                            self.ui.sort = k;
                            self.ui.descending = false;
                        }
                    }
                }
                ui.label("lock");
                ui.end_row();
                for &i in &rows {
                    let l = &m.layers[i];
                    let c = self.state.settings.constraints.get(&l.name).copied();
                    let selected = self.ui.selected_layer == Some(i);
                    ui.label(i.to_string());
                    let short = l.name.trim_end_matches(".weight");
                    let mut text = egui::RichText::new(short);
                    if self.ui.hovered_layer == Some(i) {
                        text = text.strong();
                    }
                    if ui
                        .selectable_label(selected, text)
                        .on_hover_text(format!("{} {:?}", l.name, l.shape))
                        .clicked()
                    {
                        self.ui.selected_layer = if selected { None } else { Some(i) };
                    }
                    ui.label(si(l.params as f64));
                    ui.label(flops.as_ref().map_or("-".into(), |f| f.share(i)));
                    ui.label(
                        sparsity
                            .as_ref()
                            .map_or("-".into(), |s| format!("{:.0}%", 100.0 * s[i])),
                    );
                    let mut locked = c.is_some_and(|c| c.locked);
                    if ui.checkbox(&mut locked, "").changed() {
                        self.state
                            .settings
                            .constraints
                            .entry(l.name.clone())
                            .or_default()
                            .locked = locked;
                        self.state.planning_inputs_changed();
                    }
                    ui.end_row();
                }
            });
    }

    /// The selected layer's constraints (drawn at the foot of the left panel).
    pub(super) fn constraint_editor(&mut self, ui: &mut egui::Ui, name: &str) {
        ui.group(|ui| {
            ui.label(format!("Constraints of {name}"));
            let mut c = self
                .state
                .settings
                .constraints
                .get(name)
                .copied()
                .unwrap_or_default();
            let before = c;
            ui.checkbox(&mut c.locked, "locked (stays dense)");
            ui.add_enabled_ui(!c.locked, |ui| {
                ui.add(
                    egui::Slider::new(&mut c.min_sparsity, 0.0..=1.0)
                        .text("min sparsity")
                        .fixed_decimals(2),
                );
                ui.add(
                    egui::Slider::new(&mut c.max_sparsity, 0.0..=1.0)
                        .text("max sparsity")
                        .fixed_decimals(2),
                );
            });
            if c.min_sparsity > c.max_sparsity {
                c.max_sparsity = c.min_sparsity;
            }
            if ui.button("clear").clicked() {
                c = Constraint::default();
            }
            if c != before {
                if c == Constraint::default() {
                    self.state.settings.constraints.remove(name);
                } else {
                    self.state.settings.constraints.insert(name.to_string(), c);
                }
                self.state.planning_inputs_changed();
            }
        });
    }
}
