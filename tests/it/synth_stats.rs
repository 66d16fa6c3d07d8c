//! Prints a few statistics of generated frames (run with `--nocapture` to see them).

use pruneview::synth::{Lidar, make_frame, standard_calib, write_kitti};

#[test]
fn print_frame_statistics() {
    let calib = standard_calib();
    let lidar = Lidar::hdl64e();
    // Set PRUNEVIEW_SYNTH_DUMP=DIR to keep the frames for a look.
    if let Some(dir) = std::env::var_os("PRUNEVIEW_SYNTH_DUMP") {
        write_kitti(std::path::Path::new(&dir), 0..4, 2026).expect("write frames");
    }
    for index in 0..4 {
        let t = std::time::Instant::now();
        let f = make_frame(2026, index, &lidar, &calib);
        let n = f.points.len() / 4;
        let mean_i = f.points.chunks_exact(4).map(|p| p[3]).sum::<f32>() / n.max(1) as f32;
        let names: Vec<String> = f
            .labels
            .iter()
            .map(|l| format!("{}:t{}o{}", l.name, l.truncated, l.occluded))
            .collect();
        println!(
            "frame {index}: {n} points, mean reflectance {mean_i:.3}, {} objects, {} primitives, \
             {:?}; labels {names:?}",
            f.scene.objects.len(),
            f.scene.primitives.len(),
            t.elapsed()
        );
        assert!(n > 0);
    }
}
