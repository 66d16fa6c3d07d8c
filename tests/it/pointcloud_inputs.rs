//! Readers on bad and unusual input: every problem is an error value naming the file and the
//! place, or a counted drop; PCD files in the shapes PCL writes them.

use std::path::Path;

use super::util::{TempDir, shared};

use pruneview::pointcloud::kitti::{load_labels, parse_labels, write_labels};
use pruneview::pointcloud::{Calib, ImageSize, KittiError, Scan, ScanError, ScanFormat};

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[test]
fn truncated_kitti_bin_is_an_error_naming_file_size_and_record() {
    let dir = TempDir::new("truncated");
    let path = dir.join("000001.bin");
    let mut bytes =
        std::fs::read(shared().join("data/kitti/training/velodyne/000000.bin")).unwrap();
    assert_eq!(bytes.len(), 12_800);
    bytes.truncate(12_790);
    std::fs::write(&path, &bytes).unwrap();
    let err = Scan::load(&path).unwrap_err();
    assert!(
        matches!(
            err,
            ScanError::BadSize {
                size: 12_790,
                record: 16,
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("000001.bin") && msg.contains("12790") && msg.contains("16-byte"));

    // The same bytes are fine as a different record size only if they fit it.
    let err = Scan::load_as(&path, ScanFormat::Nuscenes).unwrap_err();
    assert!(
        matches!(err, ScanError::BadSize { record: 20, .. }),
        "{err:?}"
    );
}

#[test]
fn non_finite_points_are_dropped_and_counted() {
    let dir = TempDir::new("nan");
    let path = dir.join("nan.bin");
    let pts = [
        1.0,
        2.0,
        3.0,
        0.5, //
        f32::NAN,
        0.0,
        0.0,
        0.1, //
        4.0,
        5.0,
        6.0,
        f32::INFINITY, //
        7.0,
        8.0,
        9.0,
        0.25,
    ];
    std::fs::write(&path, f32_bytes(&pts)).unwrap();
    let scan = Scan::load(&path).unwrap();
    assert_eq!(scan.len(), 2);
    assert_eq!(scan.points(), &[1.0, 2.0, 3.0, 0.5, 7.0, 8.0, 9.0, 0.25]);
    let r = scan.report();
    assert_eq!(
        (r.points_read, r.non_finite_dropped, r.points_kept()),
        (4, 2, 2)
    );
    assert!(r.to_string().contains("2 non-finite dropped"), "{r}");

    // In-memory scans follow the same rule.
    let mem = Scan::from_points(pts.to_vec(), &["x", "y", "z", "intensity"], "sim").unwrap();
    assert_eq!((mem.len(), mem.report().non_finite_dropped), (2, 2));
    assert!(Scan::from_points(vec![1.0; 7], &["x", "y", "z", "intensity"], "sim").is_err());
    assert!(Scan::from_points(vec![1.0; 8], &["x", "x", "z", "intensity"], "sim").is_err());
}

#[test]
fn empty_scan_loads_and_says_so() {
    let dir = TempDir::new("empty");
    let path = dir.join("empty.bin");
    std::fs::write(&path, b"").unwrap();
    let scan = Scan::load(&path).unwrap();
    assert!(scan.is_empty());
    assert_eq!(scan.len(), 0);
    assert_eq!(
        scan.to_features(&["x", "y", "z", "intensity"]).unwrap(),
        Vec::<f32>::new()
    );
}

#[test]
fn format_comes_from_the_name_or_is_given() {
    assert_eq!(
        ScanFormat::from_path(Path::new("a/b.PCD.BIN")),
        Some(ScanFormat::Nuscenes)
    );
    assert_eq!(
        ScanFormat::from_path(Path::new("a/000008.bin")),
        Some(ScanFormat::Kitti)
    );
    assert_eq!(
        ScanFormat::from_path(Path::new("cloud.pcd")),
        Some(ScanFormat::Pcd)
    );
    assert_eq!(ScanFormat::from_path(Path::new("cloud.ply")), None);
    assert_eq!(
        "NuScenes".parse::<ScanFormat>().unwrap(),
        ScanFormat::Nuscenes
    );
    assert_eq!("kitti".parse::<ScanFormat>().unwrap().to_string(), "kitti");
    let err = "las".parse::<ScanFormat>().unwrap_err().to_string();
    assert!(
        err.contains("'las'") && err.contains("kitti, nuscenes or pcd"),
        "{err}"
    );

    let err = Scan::load("/nonexistent/cloud.ply")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cloud.ply") && err.contains("name the format"),
        "{err}"
    );
    let err = Scan::load("/nonexistent/000001.bin")
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/000001.bin"), "{err}");

    // A nuScenes sweep read as KITTI: 2000 bytes is a multiple of 16 and 20, so both load,
    // and the columns say which layout was assumed.
    let sweep = shared().join(
        "data/nuscenes/sweeps/LIDAR_TOP/\
         n015-2018-08-02-17-16-37+0800__LIDAR_TOP__1533201470898274.pcd.bin",
    );
    let scan = Scan::load(&sweep).unwrap();
    assert_eq!((scan.len(), scan.num_features()), (100, 5));
    assert_eq!(scan.columns()[4], "ring");
    let as_kitti = Scan::load_as(&sweep, ScanFormat::Kitti).unwrap();
    assert_eq!((as_kitti.len(), as_kitti.num_features()), (125, 4));
    assert_eq!(as_kitti.report().format, Some(ScanFormat::Kitti));
}

#[test]
fn scan_writes_round_trip() {
    let dir = TempDir::new("write");
    let scan = Scan::load(shared().join("data/kitti/training/velodyne/000000.bin")).unwrap();
    let out = dir.join("copy.bin");
    scan.write_bin(&out).unwrap();
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(shared().join("data/kitti/training/velodyne/000000.bin")).unwrap()
    );
    assert!(
        std::fs::read_dir(&dir).unwrap().count() == 1,
        "temp file left behind"
    );
}

// ---------------------------------------------------------------------------------------
// PCD

const PCD_ASCII: &str = "# .PCD v0.7 - Point Cloud Data file format
VERSION 0.7
FIELDS x y z rgb intensity normal
SIZE 4 4 4 4 2 4
TYPE F F F U U F
COUNT 1 1 1 1 1 3
WIDTH 4
HEIGHT 1
VIEWPOINT 0 0 0 1 0 0 0
POINTS 4
DATA ascii
1.5 2.5 -1.25 4278190080 17 0 0 1
3 4 5 0 200 0 1 0
nan nan nan 0 0 0 0 0

-7.75 0.125 2 16777215 65535 1 0 0
";

#[test]
fn pcd_ascii_keeps_xyz_intensity_and_counts_nan_points() {
    let dir = TempDir::new("pcd_ascii");
    let path = dir.join("cloud.pcd");
    std::fs::write(&path, PCD_ASCII).unwrap();
    let scan = Scan::load(&path).unwrap();
    assert_eq!(scan.columns(), ["x", "y", "z", "intensity"]);
    assert_eq!(
        scan.points(),
        &[
            1.5, 2.5, -1.25, 17.0, 3.0, 4.0, 5.0, 200.0, -7.75, 0.125, 2.0, 65535.0
        ]
    );
    let r = scan.report();
    assert_eq!(
        (r.format, r.points_read, r.non_finite_dropped),
        (Some(ScanFormat::Pcd), 4, 1)
    );

    // CRLF line ends work too.
    let crlf = dir.join("crlf.pcd");
    std::fs::write(&crlf, PCD_ASCII.replace('\n', "\r\n")).unwrap();
    assert_eq!(Scan::load(&crlf).unwrap().points(), scan.points());
}

/// A binary PCD with x y z as float32, 3 padding bytes, intensity as `intensity_type` and a
/// float64 `time`, little-endian as PCL writes it.
fn binary_pcd(points: &[[f32; 4]], intensity: (&str, usize)) -> Vec<u8> {
    let (ty, size) = intensity;
    let mut out = format!(
        "# .PCD v0.7\nVERSION 0.7\nFIELDS x y z _ intensity time\nSIZE 4 4 4 1 {size} 8\n\
         TYPE F F F U {ty} F\nCOUNT 1 1 1 3 1 1\nWIDTH {n}\nHEIGHT 1\n\
         VIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA binary\n",
        n = points.len()
    )
    .into_bytes();
    for p in points {
        for v in &p[..3] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&[0xAA; 3]);
        match (ty, size) {
            ("F", 4) => out.extend_from_slice(&p[3].to_le_bytes()),
            ("F", 8) => out.extend_from_slice(&f64::from(p[3]).to_le_bytes()),
            ("U", 1) => out.push(p[3] as u8),
            ("U", 2) => out.extend_from_slice(&(p[3] as u16).to_le_bytes()),
            ("I", 4) => out.extend_from_slice(&(p[3] as i32).to_le_bytes()),
            _ => unreachable!(),
        }
        out.extend_from_slice(&123.456f64.to_le_bytes());
    }
    out
}

#[test]
fn pcd_binary_reads_any_numeric_intensity_type() {
    let dir = TempDir::new("pcd_binary");
    let pts = [
        [1.0, -2.0, 0.5, 12.0],
        [f32::NAN, 0.0, 0.0, 1.0],
        [10.25, 3.5, -1.75, 255.0],
    ];
    for (ty, size) in [("F", 4), ("F", 8), ("U", 1), ("U", 2), ("I", 4)] {
        let path = dir.join(format!("cloud_{ty}{size}.pcd"));
        std::fs::write(&path, binary_pcd(&pts, (ty, size))).unwrap();
        let scan = Scan::load(&path).unwrap();
        assert_eq!(
            scan.points(),
            &[1.0, -2.0, 0.5, 12.0, 10.25, 3.5, -1.75, 255.0],
            "{ty}{size}"
        );
        assert_eq!(scan.report().non_finite_dropped, 1);
    }

    // Truncated data: an error at the data offset that says how much is missing.
    let path = dir.join("short.pcd");
    let mut bytes = binary_pcd(&pts, ("F", 4));
    bytes.truncate(bytes.len() - 5);
    std::fs::write(&path, &bytes).unwrap();
    let err = Scan::load(&path).unwrap_err();
    assert!(matches!(err, ScanError::PcdBinary { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("short.pcd") && msg.contains("ends early"),
        "{msg}"
    );
}

#[test]
fn pcd_problems_are_named() {
    let dir = TempDir::new("pcd_bad");
    let load = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        Scan::load(&path).unwrap_err()
    };

    let no_intensity = "VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\n\
                        WIDTH 1\nHEIGHT 1\nPOINTS 1\nDATA ascii\n1 2 3\n";
    let err = load("nointensity.pcd", no_intensity);
    assert!(
        matches!(
            err,
            ScanError::PcdMissingField {
                field: "intensity",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("FIELDS: x y z"), "{err}");

    let compressed = PCD_ASCII.replace("DATA ascii", "DATA binary_compressed");
    let err = load("compressed.pcd", &compressed);
    assert!(matches!(err, ScanError::PcdUnsupported { .. }), "{err:?}");
    assert!(err.to_string().contains("binary_compressed"), "{err}");

    let bad_size = PCD_ASCII.replace("SIZE 4 4 4 4 2 4", "SIZE 4 4 4 4 2");
    let err = load("badsize.pcd", &bad_size).to_string();
    assert!(
        err.contains("header line 4") && err.contains("SIZE has 5 entries"),
        "{err}"
    );

    let bad_type = PCD_ASCII.replace("SIZE 4 4 4 4 2 4", "SIZE 4 4 4 4 2 2");
    let err = load("badtype.pcd", &bad_type).to_string();
    assert!(err.contains("normal") && err.contains("SIZE 2"), "{err}");

    let short_line = PCD_ASCII.replace("3 4 5 0 200 0 1 0", "3 4 5 0 200 0 1");
    let err = load("shortline.pcd", &short_line).to_string();
    assert!(
        err.contains("line 13") && err.contains("expected 8 values"),
        "{err}"
    );

    let not_number = PCD_ASCII.replace("3 4 5 0 200", "3 4 five 0 200");
    let err = load("nan_text.pcd", &not_number).to_string();
    assert!(err.contains("line 13") && err.contains("'five'"), "{err}");

    let too_few = PCD_ASCII
        .replace("POINTS 4", "POINTS 5")
        .replace("WIDTH 4", "WIDTH 5");
    let err = load("fewer.pcd", &too_few).to_string();
    assert!(
        err.contains("after 4 points") && err.contains("promises 5"),
        "{err}"
    );

    let mismatch = PCD_ASCII.replace("POINTS 4", "POINTS 3");
    let err = load("mismatch.pcd", &mismatch).to_string();
    assert!(
        err.contains("POINTS 3") && err.contains("WIDTH x HEIGHT = 4"),
        "{err}"
    );

    let err = load("nodata.pcd", "VERSION 0.7\nFIELDS x y z intensity\n").to_string();
    assert!(err.contains("before the DATA line"), "{err}");

    let err = load("ply.pcd", "ply\nformat ascii 1.0\n").to_string();
    assert!(err.contains("line 1") && err.contains("'PLY'"), "{err}");

    // Crafted headers: errors, never a panic or an allocation the file cannot back.
    let wrap = PCD_ASCII.replace("COUNT 1 1 1 1 1 3", "COUNT 1 1 1 1 1 18446744073709551615");
    let err = load("count_wraps.pcd", &wrap).to_string();
    assert!(err.contains("COUNT") && err.contains("normal"), "{err}");
    let zero = PCD_ASCII.replace("COUNT 1 1 1 1 1 3", "COUNT 0 0 0 0 0 0");
    let err = load("count_zero.pcd", &zero).to_string();
    assert!(err.contains("COUNT 0"), "{err}");
    for (name, points) in [("p2_61", "2305843009213693952"), ("p1e12", "1000000000000")] {
        let huge = PCD_ASCII
            .replace("POINTS 4", &format!("POINTS {points}"))
            .replace("WIDTH 4", &format!("WIDTH {points}"));
        let err = load(&format!("{name}.pcd"), &huge).to_string();
        assert!(err.contains(points), "{err}");
        let binary = huge.replace("DATA ascii", "DATA binary");
        let err = load(&format!("{name}_bin.pcd"), &binary).to_string();
        assert!(err.contains(points) && err.contains("ends early"), "{err}");
    }
    let dims = PCD_ASCII
        .replace("POINTS 4\n", "")
        .replace("WIDTH 4", "WIDTH 4294967296")
        .replace("HEIGHT 1", "HEIGHT 4294967296");
    let err = load("dims_overflow.pcd", &dims).to_string();
    assert!(err.contains("WIDTH"), "{err}");
}

// ---------------------------------------------------------------------------------------
// KITTI calibration and labels

#[test]
fn calib_keyed_and_by_index_agree() {
    let path = shared().join("data/kitti/training/calib/000008.txt");
    let calib = Calib::load(&path).unwrap();
    assert_eq!(calib.p2[0], [721.5377, 0.0, 609.5593, 44.85728]);
    assert_eq!(calib.p2[2][3], 2.745884e-3);
    assert_eq!(calib.r0[0], [0.9999239, 0.00983776, -0.007445048]);
    assert_eq!(calib.v2c[2][3], -0.2717806);

    // Keys OpenPCDet does not look at: found by line index (2, 4, 5) instead.
    let text = std::fs::read_to_string(&path).unwrap();
    let renamed: String = text
        .lines()
        .enumerate()
        .map(|(i, l)| format!("M{i}:{}\n", l.split_once(':').unwrap().1))
        .collect();
    assert_eq!(Calib::parse(&renamed, "renamed.txt").unwrap(), calib);

    // Our own writer reads back identically, by key and by index.
    let written = calib.to_kitti_text();
    assert_eq!(written.lines().count(), 7);
    assert_eq!(Calib::parse(&written, "written.txt").unwrap(), calib);
    let dir = TempDir::new("calib");
    calib.write(dir.join("000008.txt")).unwrap();
    assert_eq!(Calib::load(dir.join("000008.txt")).unwrap(), calib);

    // And points project the same way after the round trip.
    let p = calib.lidar_to_rect([10.0, 1.0, -1.0]);
    let ([u, v], depth) = calib.rect_to_img(p);
    assert!(
        u > 0.0 && u < 1242.0 && v > 0.0 && v < 375.0 && depth > 9.0,
        "{u} {v} {depth}"
    );
}

#[test]
fn malformed_calib_lines_are_named() {
    let text =
        std::fs::read_to_string(shared().join("data/kitti/training/calib/000008.txt")).unwrap();
    let lines: Vec<&str> = text.lines().collect();

    let short_p2 = text.replace(lines[2], "P2: 7.215377e+02 0.0 6.095593e+02");
    let err = Calib::parse(&short_p2, "calib/000001.txt").unwrap_err();
    assert!(
        matches!(
            err,
            KittiError::CalibCount {
                line: 3,
                expected: 12,
                found: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("calib/000001.txt: line 3 (P2)"),
        "{err}"
    );

    let bad_value = text.replace("9.999239000000e-01", "0.99x");
    let err = Calib::parse(&bad_value, "calib/000002.txt")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("calib/000002.txt: line 5 (R0_rect): value 0 '0.99x'"),
        "{err}"
    );

    let nan = text.replace("-2.717806000000e-01", "nan");
    let err = Calib::parse(&nan, "c.txt").unwrap_err().to_string();
    assert!(
        err.contains("line 6 (Tr_velo_to_cam): value 11 'nan'"),
        "{err}"
    );

    let err = Calib::parse(&lines[..3].join("\n"), "c.txt")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no R0_rect") && err.contains("line 5"),
        "{err}"
    );

    let err = Calib::load("/nonexistent/calib.txt")
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/calib.txt"), "{err}");
}

#[test]
fn malformed_label_lines_are_named() {
    let good =
        std::fs::read_to_string(shared().join("data/kitti/training/label_2/000008.txt")).unwrap();
    let lines: Vec<&str> = good.lines().collect();

    let short = format!("{}\nCar 0.00 0 1.0 1 2 3 4 1.5 1.6 3.9 1 2\n", lines[0]);
    let err = parse_labels(&short, "label_2/000009.txt").unwrap_err();
    assert!(
        matches!(
            err,
            KittiError::LabelFields {
                line: 2,
                found: 13,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with("label_2/000009.txt: line 2:"),
        "{err}"
    );

    let bad_occ = good.replace("Car 0.00 1 2.04", "Car 0.00 1.5 2.04");
    let err = parse_labels(&bad_occ, "l.txt").unwrap_err().to_string();
    assert!(err.contains("line 2: field 3 (occluded) '1.5'"), "{err}");

    let bad_z = good.replace("7.86", "7.8.6");
    let err = parse_labels(&bad_z, "l.txt").unwrap_err().to_string();
    assert!(
        err.contains("line 2: field 14 (location z) '7.8.6'"),
        "{err}"
    );

    // A score column, blank lines and "1.0"-style occlusion are fine.
    let scored = format!(
        "\n{} 0.75\n\nPedestrian 0 1.0 0 1 2 3 4 1.7 0.6 0.8 1 1.6 9 0\n",
        lines[1]
    );
    let objs = parse_labels(&scored, "scored.txt").unwrap();
    assert_eq!(objs.len(), 2);
    assert_eq!(
        (objs[0].score, objs[1].occluded, objs[1].score),
        (Some(0.75), 1, None)
    );
}

#[test]
fn labels_write_and_read_back_exactly() {
    let labels = load_labels(shared().join("data/kitti/training/label_2/000008.txt")).unwrap();
    let dir = TempDir::new("labels");
    let path = dir.join("000008.txt");
    write_labels(&path, &labels).unwrap();
    assert_eq!(load_labels(&path).unwrap(), labels);

    let calib = Calib::load(shared().join("data/kitti/training/calib/000008.txt")).unwrap();
    let pred = calib.lidar_box_to_prediction(
        &[10.0, 1.0, -0.8, 3.9, 1.6, 1.5, 0.3],
        "Car",
        0.625,
        ImageSize { h: 375, w: 1242 },
    );
    write_labels(&path, std::slice::from_ref(&pred)).unwrap();
    assert_eq!(load_labels(&path).unwrap(), [pred]);
}

#[test]
fn image_size_parses_height_by_width() {
    assert_eq!(
        "375x1242".parse::<ImageSize>().unwrap(),
        ImageSize { h: 375, w: 1242 }
    );
    assert_eq!(
        " 370 X 1224 ".parse::<ImageSize>().unwrap(),
        ImageSize { h: 370, w: 1224 }
    );
    assert_eq!(ImageSize { h: 375, w: 1242 }.to_string(), "375x1242");
    for bad in ["1242", "375x", "0x1242", "375x-1", "375*1242"] {
        let err = bad.parse::<ImageSize>().unwrap_err().to_string();
        assert!(err.contains(bad) && err.contains("375x1242"), "{err}");
    }
}

/// Calibration scans are found and read one way for the CLI and the app: a KITTI root
/// expands to its `velodyne/` files, and a FOV_POINTS_ONLY model gets the camera-FOV filter
/// from the layout's `calib/`, exactly as with an explicit `--fov-calib` folder.
#[test]
fn calibration_scans_from_a_kitti_root_get_the_layouts_fov_filter() {
    use pruneview::progress::Control;
    use pruneview::session::scans::{ScanReading, calibration_scans, expand_scan_paths};
    let root = shared().join("data/kitti/training");
    let det = pruneview::detect::Detector::load(
        Some(&shared().join("reference/cfgs/kitti_models/pointpillar.yaml")),
        &shared().join("reference/pointpillar_kitti_000008/weights.safetensors"),
    )
    .unwrap();
    assert!(det.config.data.fov_points_only);
    let files = expand_scan_paths(std::slice::from_ref(&root)).unwrap();
    assert_eq!(files, expand_scan_paths(&[root.join("velodyne")]).unwrap());
    assert!(!files.is_empty());
    let quiet = Control::quiet();
    let auto = calibration_scans(&det, &files, &ScanReading::default(), &quiet).unwrap();
    assert!(auto.warnings.is_empty(), "{:?}", auto.warnings);
    let auto = auto.scans;
    let explicit = ScanReading {
        fov_calib: Some(root.join("calib")),
        ..ScanReading::default()
    };
    let given = calibration_scans(&det, &files, &explicit, &quiet)
        .unwrap()
        .scans;
    for (a, b) in auto.iter().zip(&given) {
        assert_eq!(a.id, b.id);
        assert_eq!(a.points, b.points);
    }
    // Frame 000008 has 17 of its 17,238 points outside the camera's view (data README).
    let i = files
        .iter()
        .position(|f| f.ends_with("000008.bin"))
        .unwrap();
    let unfiltered = Scan::load(&files[i]).unwrap();
    assert_eq!(unfiltered.len(), 17_238);
    assert_eq!(auto[i].points.len() / 4, 17_221);
    // A scan outside a KITTI layout is read whole.
    let dir = TempDir::new("outside-layout");
    let copy = dir.join("000008.bin");
    std::fs::copy(&files[i], &copy).unwrap();
    let whole = calibration_scans(&det, &[copy], &ScanReading::default(), &quiet).unwrap();
    assert_eq!(whole.scans[0].points.len() / 4, unfiltered.len());
    assert!(
        whole.warnings.iter().any(|w| w.contains("FOV_POINTS_ONLY")),
        "{:?}",
        whole.warnings
    );
}
