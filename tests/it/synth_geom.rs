//! Ray casting of the simulator's primitives against hand-computed hits, and the sensor
//! model's knobs (azimuth step, range noise, intensity from material and incidence).

use pruneview::synth::geom::{Material, Primitive, Shape};
use pruneview::synth::{Lidar, generate_scene, render};

const M: Material = Material::new(0.5, 0.0);
const X: [f32; 3] = [1.0, 0.0, 0.0];

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() < 1e-4
}

#[test]
fn box_hits_its_near_face_with_the_outward_normal() {
    let b = Primitive::new(
        Shape::Box {
            half: [1.0, 0.5, 0.5],
        },
        [10.0, 0.0, 0.0],
        0.0,
        M,
        0,
    );
    let h = b.intersect([0.0; 3], X).expect("hit");
    assert!(close(h.t, 9.0) && close(h.normal[0], -1.0));
    // Turned 90 degrees, the box shows its 0.5 m half-width.
    let b = Primitive::new(
        Shape::Box {
            half: [1.0, 0.5, 0.5],
        },
        [10.0, 0.0, 0.0],
        std::f32::consts::FRAC_PI_2,
        M,
        0,
    );
    let h = b.intersect([0.0; 3], X).expect("hit");
    assert!(close(h.t, 9.5), "{}", h.t);
    assert!(b.intersect([0.0; 3], [0.0, 1.0, 0.0]).is_none());
    assert!(b.contains([10.0, 0.9, 0.0]) && !b.contains([10.9, 0.0, 0.0]));
}

#[test]
fn cylinders_and_ellipsoids() {
    let pole = Primitive::new(
        Shape::CylZ {
            r: 0.2,
            half_h: 3.0,
        },
        [5.0, 0.0, 0.0],
        0.3,
        M,
        0,
    );
    let h = pole.intersect([0.0; 3], X).expect("pole");
    assert!(close(h.t, 4.8) && close(h.normal[0], -1.0));
    // Over the top of the pole: a cap hit from above.
    let down = [0.0, 0.0, -1.0];
    let h = pole.intersect([5.0, 0.0, 10.0], down).expect("cap");
    assert!(close(h.t, 7.0) && close(h.normal[2], 1.0));
    // A wheel (axis along local y) seen from the side and edge-on.
    let wheel = Primitive::new(
        Shape::CylY {
            r: 0.3,
            half_w: 0.1,
        },
        [0.0, 4.0, 0.0],
        0.0,
        M,
        0,
    );
    let h = wheel
        .intersect([0.0; 3], [0.0, 1.0, 0.0])
        .expect("wheel face");
    assert!(close(h.t, 3.9) && close(h.normal[1], -1.0));
    let h = wheel.intersect([-5.0, 4.0, 0.0], X).expect("tread");
    assert!(close(h.t, 4.7));
    let head = Primitive::new(
        Shape::Ellipsoid {
            radii: [0.1, 0.2, 0.3],
        },
        [0.0, 0.0, 2.0],
        0.0,
        M,
        0,
    );
    let h = head.intersect([0.0; 3], [0.0, 0.0, 1.0]).expect("head");
    assert!(close(h.t, 1.7) && close(h.normal[2], -1.0));
    assert!(head.intersect([0.0, 0.25, 0.0], [0.0, 0.0, 1.0]).is_none());
}

#[test]
fn finer_azimuth_steps_give_more_points() {
    let scene = generate_scene(9, 1);
    let coarse = render(&scene, &Lidar::hdl64e()).len();
    let fine = render(
        &scene,
        &Lidar {
            azimuth_step_deg: 0.085,
            ..Lidar::hdl64e()
        },
    )
    .len();
    let ratio = fine as f32 / coarse as f32;
    assert!((1.8..2.2).contains(&ratio), "ratio {ratio}");
}

#[test]
fn range_noise_and_paint_are_visible_in_the_road_returns() {
    let scene = generate_scene(4, 2);
    let lidar = Lidar::hdl64e();
    let points = render(&scene, &lidar);
    // Road returns within 20 m: their heights scatter by about the range noise around the
    // road surface, and the lane paint returns brighter than the asphalt.
    let (mut dev, mut n, mut bright) = (0.0f64, 0, 0);
    for p in points.chunks_exact(4) {
        let (u, s) = scene.ground.to_road(p[0], p[1]);
        let r = p[0].hypot(p[1]);
        if r < 20.0 && s.abs() < scene.ground.half_width - 0.5 && u.abs() > 1.0 {
            let dz = p[2] - scene.ground.height_at(p[0], p[1]);
            if dz.abs() < 0.3 {
                dev += f64::from(dz * dz);
                n += 1;
                if p[3] > 0.3 {
                    bright += 1;
                }
            }
        }
    }
    let rms = (dev / n as f64).sqrt();
    assert!(n > 10_000, "{n} road points");
    assert!((0.002..0.02).contains(&rms), "road height rms {rms}");
    assert!(bright > 50 && bright * 10 < n, "{bright} bright of {n}");
}
