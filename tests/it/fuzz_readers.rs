//! Property tests of every reader of untrusted files: whatever the bytes (a valid file with
//! random edits, truncated, or noise), the safetensors, PCD, KITTI label and calibration,
//! curves and allocation readers return a value or an error; they never panic. proptest
//! shrinks a failing input to a small one; the case count is kept low for CI (override with
//! `PROPTEST_CASES`).

use std::path::{Path, PathBuf};

use super::util::repo;

use proptest::prelude::*;
use pruneview::io::{OutTensor, write_safetensors};
use pruneview::model::Weights;
use pruneview::pointcloud::Scan;
use pruneview::pointcloud::kitti::{Calib, load_labels};
use pruneview::prune::{Allocation, Curves};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pruneview-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// A small valid safetensors file's bytes.
fn safetensors_seed() -> Vec<u8> {
    let p = scratch("seed.safetensors");
    let t = [
        OutTensor::f32("a.weight", &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        OutTensor::i64("a.num_batches_tracked", &[], &[7]),
    ];
    write_safetensors(&p, &t, None, &[]).unwrap();
    std::fs::read(&p).unwrap()
}

const PCD_SEED: &str = "# .PCD v0.7\nVERSION 0.7\nFIELDS x y z intensity\nSIZE 4 4 4 4\nTYPE F F F F\nCOUNT 1 1 1 1\nWIDTH 2\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 2\nDATA ascii\n1 2 3 0.5\n4 5 6 0.25\n";

const LABEL_SEED: &str = "Car 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59 0.93\nDontCare -1 -1 -10 503.89 169.71 590.61 190.13 -1 -1 -1 -1000 -1000 -1000 -10\n";

/// Edits of a valid file: byte overwrites, a truncation and an insertion of digits, all
/// positioned by the strategy, so most inputs stay close to valid and reach deep code.
fn edited(seed: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let n = seed.len().max(1);
    (
        proptest::collection::vec((0..n, any::<u8>()), 0..6),
        proptest::option::of(0..n),
        proptest::option::of((0..n, "[0-9eE+-]{1,24}")),
    )
        .prop_map(move |(writes, cut, insert)| {
            let mut b = seed.clone();
            for (i, v) in writes {
                if i < b.len() {
                    b[i] = v;
                }
            }
            if let Some((i, digits)) = insert {
                let i = i.min(b.len());
                b.splice(i..i, digits.into_bytes());
            }
            if let Some(c) = cut {
                b.truncate(c);
            }
            b
        })
}

fn bytes_for(seed: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => edited(seed),
        1 => proptest::collection::vec(any::<u8>(), 0..512),
    ]
}

fn written(name: &str, bytes: &[u8]) -> PathBuf {
    let p = scratch(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn read_all_tensors(p: &Path) {
    if let Ok(w) = Weights::open(p) {
        for k in w.keys() {
            let _ = w.tensor_any_shape(&k);
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn safetensors_reader_never_panics(b in bytes_for(safetensors_seed())) {
        read_all_tensors(&written("w.safetensors", &b));
    }

    #[test]
    fn pcd_reader_never_panics(b in bytes_for(PCD_SEED.as_bytes().to_vec())) {
        let _ = Scan::load(written("s.pcd", &b));
    }

    #[test]
    fn kitti_label_reader_never_panics(b in bytes_for(LABEL_SEED.as_bytes().to_vec())) {
        let _ = load_labels(written("l.txt", &b));
    }

    #[test]
    fn kitti_calib_reader_never_panics(
        b in bytes_for(std::fs::read(repo("../shared/data/kitti/training/calib/000008.txt")).unwrap())
    ) {
        let _ = Calib::load(written("c.txt", &b));
    }

    #[test]
    fn curves_reader_never_panics(
        b in bytes_for(std::fs::read(repo("tests/data/fuzz/curves.json")).unwrap())
    ) {
        let _ = Curves::load(&written("curves.json", &b));
    }

    #[test]
    fn allocation_reader_never_panics(
        b in bytes_for(std::fs::read(repo("tests/data/fuzz/allocation.json")).unwrap())
    ) {
        let _ = Allocation::load(&written("allocation.json", &b));
    }
}
