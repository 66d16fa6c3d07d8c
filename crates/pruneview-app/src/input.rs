//! Input fix-ups applied before egui sees a frame's events.
//!
//! egui sets a dragged slider from where the pointer is at the end of a frame, also in the
//! frame that releases it. When the button release and further pointer motion arrive in the
//! same frame (a quick flick off the slider, or any release while a slow frame was drawn),
//! the value lands where the pointer went after the release: the budget slider snapped to
//! 100% that way. [`ReleaseFirst`] ends a frame's events at a button release that pointer
//! events follow and hands the rest to the next frame, so every widget sees the release
//! where it happened.

use eframe::egui;

/// The egui plugin that splits a frame's events after a pointer button release (see the
/// module docs). Add it once per context: [`egui::Context::add_plugin`].
#[derive(Default)]
pub struct ReleaseFirst {
    /// Events held back for the next frame, in order.
    pending: Vec<egui::Event>,
}

impl egui::Plugin for ReleaseFirst {
    fn debug_name(&self) -> &'static str {
        "pruneview::ReleaseFirst"
    }

    fn input_hook(&mut self, ctx: &egui::Context, input: &mut egui::RawInput) {
        let mut events = std::mem::take(&mut self.pending);
        events.append(&mut input.events);
        let (now, later) = split_after_release(events);
        input.events = now;
        self.pending = later;
        if !self.pending.is_empty() {
            ctx.request_repaint();
        }
    }
}

/// `events` up to and including the first button release that is followed by a pointer
/// event, and the events after it (empty when there is no such release).
pub fn split_after_release(mut events: Vec<egui::Event>) -> (Vec<egui::Event>, Vec<egui::Event>) {
    let is_pointer = |e: &egui::Event| {
        matches!(
            e,
            egui::Event::PointerMoved(_)
                | egui::Event::PointerButton { .. }
                | egui::Event::PointerGone
                | egui::Event::Touch { .. }
        )
    };
    let release = events.iter().enumerate().position(|(i, e)| {
        matches!(e, egui::Event::PointerButton { pressed: false, .. })
            && events[i + 1..].iter().any(is_pointer)
    });
    match release {
        Some(i) => {
            let later = events.split_off(i + 1);
            (events, later)
        }
        None => (events, Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn button(x: f32, pressed: bool) -> egui::Event {
        egui::Event::PointerButton {
            pos: egui::pos2(x, 0.0),
            button: egui::PointerButton::Primary,
            pressed,
            modifiers: egui::Modifiers::default(),
        }
    }

    fn moved(x: f32) -> egui::Event {
        egui::Event::PointerMoved(egui::pos2(x, 0.0))
    }

    #[test]
    fn a_release_followed_by_motion_ends_the_frame() {
        let (now, later) = split_after_release(vec![moved(1.0), button(2.0, false), moved(9.0)]);
        assert_eq!(now, vec![moved(1.0), button(2.0, false)]);
        assert_eq!(later, vec![moved(9.0)]);
        // Press, release, press, release: one release per frame.
        let (now, later) = split_after_release(vec![
            button(1.0, true),
            button(1.0, false),
            button(1.0, true),
            button(1.0, false),
        ]);
        assert_eq!(now.len(), 2);
        assert_eq!(later.len(), 2);
    }

    #[test]
    fn frames_without_such_a_release_are_unchanged() {
        let keys = egui::Event::Text("a".into());
        for events in [
            vec![],
            vec![moved(1.0), moved(2.0)],
            vec![moved(1.0), button(1.0, false)],
            vec![button(1.0, false), keys.clone()],
        ] {
            let (now, later) = split_after_release(events.clone());
            assert_eq!(now, events);
            assert!(later.is_empty());
        }
    }

    #[test]
    fn held_back_events_come_first_in_the_next_frame() {
        let ctx = egui::Context::default();
        let mut p = ReleaseFirst::default();
        let mut input = egui::RawInput {
            events: vec![button(2.0, false), moved(9.0)],
            ..Default::default()
        };
        egui::Plugin::input_hook(&mut p, &ctx, &mut input);
        assert_eq!(input.events, vec![button(2.0, false)]);
        let mut next = egui::RawInput {
            events: vec![moved(10.0)],
            ..Default::default()
        };
        egui::Plugin::input_hook(&mut p, &ctx, &mut next);
        assert_eq!(next.events, vec![moved(9.0), moved(10.0)]);
        assert!(p.pending.is_empty());
    }
}
