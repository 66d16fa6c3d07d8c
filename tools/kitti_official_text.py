#!/usr/bin/env python3
"""Write OpenPCDet's KITTI evaluation text (`official.txt`) for the eval fixtures.

For every case directory under `--cases` (default: tests/data/eval/*/ that hold a `label_2/`),
this reads the ground truth (`label_2/*.txt`; the frames are its sorted stems) and the
detections (`results/<stem>.txt`, 16th field = score; a missing file is an empty frame), runs
the reference KITTI evaluator (`kitti_object_eval_python`, loaded exactly as
`tools/kitti_eval_crosscheck.py` does) for Car, Pedestrian, Cyclist with both overlap sets of
OpenPCDet's `get_official_eval_result` (strict `overlap_0_7`, loose `overlap_0_5`) and writes
`<case>/official.txt` in that function's text layout:

    {Class} AP@{bbox:.2f}, {bev:.2f}, {3d:.2f}:
    bbox AP:{e:.4f}, {m:.4f}, {h:.4f}        (R11)
    bev  AP:...
    3d   AP:...
    aos  AP:{e:.2f}, {m:.2f}, {h:.2f}        (only when AOS is computed)
    {Class} AP_R40@...:
    (the same four lines with R40 values)

per class, strict set first. AOS is computed as OpenPCDet decides it: when the first detection
frame that has any objects has a first alpha != -10. mmdet3d's copy of the evaluator has a
different `do_eval` signature and its own text layout (`kitti_eval`), so this tool calls the
shared `eval_class` / `get_mAP11` / `get_mAP40` directly, the way OpenPCDet's `do_eval` does
(AOS from the bbox pass only), and formats the text itself.

As a sanity check, when `<case>/expected.json` exists, the strict-overlap R11/R40
bbox/bev/3d values are compared with it (tolerance 1e-4); a mismatch is reported and the exit
status is 1.

Setup and run (see tools/kitti_eval_crosscheck.py):

    pip install numba numpy
    pip download mmdet3d==1.4.0 --no-deps -d /tmp/whl
    (cd /tmp/whl && unzip -o -q mmdet3d-*.whl 'mmdet3d/evaluation/functional/kitti_utils/*')
    NUMBA_ENABLE_CUDASIM=1 python3 tools/kitti_official_text.py \
        --kitti-utils /tmp/whl/mmdet3d/evaluation/functional/kitti_utils \
        --cases tests/data/eval
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kitti_eval_crosscheck import load_reference, parse  # noqa: E402

CLASS_NAMES = ["Car", "Pedestrian", "Cyclist"]
CLASS_IDS = [0, 1, 2]
DIFFS = ["easy", "moderate", "hard"]
METRICS = ["bbox", "bev", "3d"]

# OpenPCDet get_official_eval_result: [metric (bbox, bev, 3d), class (Car, Ped, Cyc, Van,
# Person_sitting, Truck)].
OVERLAP_0_7 = np.array([[0.7, 0.5, 0.5, 0.7, 0.5, 0.7],
                        [0.7, 0.5, 0.5, 0.7, 0.5, 0.7],
                        [0.7, 0.5, 0.5, 0.7, 0.5, 0.7]])
OVERLAP_0_5 = np.array([[0.7, 0.5, 0.5, 0.7, 0.5, 0.5],
                        [0.5, 0.25, 0.25, 0.5, 0.25, 0.5],
                        [0.5, 0.25, 0.25, 0.5, 0.25, 0.5]])


def load_case(root):
    stems = sorted(os.path.splitext(f)[0] for f in os.listdir(os.path.join(root, "label_2"))
                   if f.endswith(".txt"))
    gts, dts = [], []
    for s in stems:
        gts.append(parse(os.path.join(root, "label_2", s + ".txt")))
        rp = os.path.join(root, "results", s + ".txt")
        # a missing result file is an empty frame (/dev/null parses to empty arrays)
        dts.append(parse(rp if os.path.exists(rp) else os.devnull))
    return stems, gts, dts


def wants_aos(dt_annos):
    for anno in dt_annos:
        if anno["alpha"].shape[0] != 0:
            return bool(anno["alpha"][0] != -10)
    return False


def evaluate(ev, gts, dts, min_overlaps, compute_aos):
    """OpenPCDet's do_eval: returns dict name -> [class, difficulty, overlap set] arrays."""
    out = {}
    for mi, metric in enumerate(METRICS):
        ret = ev.eval_class(gts, dts, CLASS_IDS, [0, 1, 2], mi, min_overlaps,
                            compute_aos=(compute_aos and mi == 0))
        out[metric + "_r11"] = ev.get_mAP11(ret["precision"])
        out[metric + "_r40"] = ev.get_mAP40(ret["precision"])
        if mi == 0 and compute_aos:
            out["aos_r11"] = ev.get_mAP11(ret["orientation"])
            out["aos_r40"] = ev.get_mAP40(ret["orientation"])
    return out


def render(res, min_overlaps, compute_aos):
    lines = []
    for j, name in enumerate(CLASS_NAMES):
        for i in range(min_overlaps.shape[0]):
            ov = "{:.2f}, {:.2f}, {:.2f}".format(*min_overlaps[i, :, j])
            for suffix, tag in (("r11", "AP"), ("r40", "AP_R40")):
                lines.append(f"{name} {tag}@{ov}:")
                for metric, label in (("bbox", "bbox AP"), ("bev", "bev  AP"),
                                      ("3d", "3d   AP")):
                    v = res[f"{metric}_{suffix}"][j, :, i]
                    lines.append(f"{label}:{v[0]:.4f}, {v[1]:.4f}, {v[2]:.4f}")
                if compute_aos:
                    v = res[f"aos_{suffix}"][j, :, i]
                    lines.append(f"aos  AP:{v[0]:.2f}, {v[1]:.2f}, {v[2]:.2f}")
    return "".join(ln + "\n" for ln in lines)


def check(root, res):
    path = os.path.join(root, "expected.json")
    if not os.path.exists(path):
        return None
    bad = []
    for r in json.load(open(path))["results"]:
        ci, di = CLASS_NAMES.index(r["class"]), DIFFS.index(r["difficulty"])
        for key in ("r11", "r40"):
            got = float(res[f"{r['metric']}_{key}"][ci, di, 0])
            want = r["ap_" + key]
            if abs(got - want) > 1e-4:
                bad.append(f"{r['class']}/{r['difficulty']}/{r['metric']}/{key}: "
                           f"{got} vs {want}")
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kitti-utils", required=True,
                    help="directory holding the reference eval.py and rotate_iou.py")
    ap.add_argument("--cases", default="tests/data/eval",
                    help="directory whose subdirectories are the cases")
    args = ap.parse_args()
    if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        print("warning: NUMBA_ENABLE_CUDASIM is not 1; the rotated IoU needs a GPU then",
              file=sys.stderr)
    ev = load_reference(args.kitti_utils)
    min_overlaps = np.stack([OVERLAP_0_7, OVERLAP_0_5], axis=0)[:, :, CLASS_IDS]
    failed = False
    for case in sorted(os.listdir(args.cases)):
        root = os.path.join(args.cases, case)
        if not os.path.isdir(os.path.join(root, "label_2")):
            continue
        stems, gts, dts = load_case(root)
        aos = wants_aos(dts)
        res = evaluate(ev, gts, dts, min_overlaps, aos)
        with open(os.path.join(root, "official.txt"), "w") as f:
            f.write(render(res, min_overlaps, aos))
        bad = check(root, res)
        if bad is None:
            status = "no expected.json"
        elif bad:
            failed = True
            status = "MISMATCH vs expected.json:\n  " + "\n  ".join(bad)
        else:
            status = "strict R11/R40 match expected.json"
        print(f"{case}: {len(stems)} frames, aos={aos}; {status}", file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
