#!/usr/bin/env python3
"""Generate KITTI evaluation cross-check fixtures for `tests/it/eval_crosscheck.rs`.

The reference is the KITTI evaluator that OpenPCDet ships as
`pcdet/datasets/kitti/kitti_object_eval_python` (traveller59's code, MIT). The same module, with
the same `clean_data` / `compute_statistics_jit` / `get_thresholds` / `eval_class`, ships in the
PyPI wheel of mmdet3d as `mmdet3d/evaluation/functional/kitti_utils/{eval,rotate_iou}.py`, which
is how this tool gets it without a source checkout:

    pip install numba numpy
    pip download mmdet3d==1.4.0 --no-deps -d /tmp/whl
    (cd /tmp/whl && unzip -o -q mmdet3d-*.whl 'mmdet3d/evaluation/functional/kitti_utils/*')
    NUMBA_ENABLE_CUDASIM=1 python3 tools/kitti_eval_crosscheck.py \
        --kitti-utils /tmp/whl/mmdet3d/evaluation/functional/kitti_utils \
        --out tests/data/eval

(OpenPCDet's own directory works as well.) The rotated IoU there is a numba.cuda kernel;
NUMBA_ENABLE_CUDASIM=1 runs it on the CPU. Under the simulator *exactly coincident* boxes get a
wrong IoU, so every generated detection is moved off its ground truth by a little noise.

For each case the tool writes `<out>/<case>/label_2/*.txt` (ground truth, KITTI label format),
`<out>/<case>/results/*.txt` (detections, with a score) and `<out>/<case>/expected.json`:
AP|R11 and AP|R40 for Car, Pedestrian, Cyclist x easy/moderate/hard x bbox/bev/3d at the strict
overlaps, plus the number of valid ground-truth objects. CI only reads the fixtures.

Generated values avoid the two places where the reference's float64 label parse and our float32
one could disagree: 2-D box heights within 0.05 px of 25 or 40, and IoUs at a threshold (the
noise is continuous, so an IoU lands within float32 rounding of 0.5 or 0.7 with negligible
probability; the tool reports the closest one).
"""

import argparse
import importlib.util
import json
import math
import os
import random
import sys

import numpy as np

CLASSES = ["Car", "Pedestrian", "Cyclist"]
DIFFS = ["easy", "moderate", "hard"]
METRICS = ["bbox", "bev", "3d"]
NEIGHBOUR = {"Van": "Car", "Person_sitting": "Pedestrian"}
DIMS = {  # h, w, l
    "Car": (1.55, 1.65, 3.9),
    "Van": (2.1, 1.9, 5.0),
    "Truck": (3.0, 2.5, 9.0),
    "Pedestrian": (1.75, 0.65, 0.85),
    "Person_sitting": (1.25, 0.6, 0.85),
    "Cyclist": (1.75, 0.6, 1.75),
}


def load_reference(kitti_utils):
    """Imports `eval.py` from `kitti_utils` as `kitti_ref.eval`, so that its relative
    `rotate_iou` import resolves, without running the directory's `__init__.py`."""
    import types
    pkg = types.ModuleType("kitti_ref")
    pkg.__path__ = [kitti_utils]
    sys.modules["kitti_ref"] = pkg
    spec = importlib.util.spec_from_file_location("kitti_ref.eval",
                                                  os.path.join(kitti_utils, "eval.py"))
    ev = importlib.util.module_from_spec(spec)
    sys.modules["kitti_ref.eval"] = ev
    spec.loader.exec_module(ev)
    return ev


def fmt(v, nd):
    s = f"{v:.{nd}f}"
    return "0.00" if s in ("-0.00", "-0.0000") and nd == 2 else s


def label_line(o, with_score):
    f = [o["name"], fmt(o["truncated"], 2), str(o["occluded"]), fmt(o["alpha"], 2)]
    f += [fmt(v, 2) for v in o["bbox"]]
    f += [fmt(v, 2) for v in (o["h"], o["w"], o["l"])]
    f += [fmt(v, 2) for v in o["loc"]]
    f.append(fmt(o["ry"], 2))
    if with_score:
        f.append(fmt(o["score"], 4))
    return " ".join(f)


def safe_height(rng, lo, hi):
    """A 2-D box height in [lo, hi] at least 0.05 px from 25 and 40."""
    while True:
        h = round(rng.uniform(lo, hi), 2)
        if abs(h - 25) > 0.05 and abs(h - 40) > 0.05:
            return h


def make_object(rng, name, slot, occl_bias):
    h, w, l = DIMS[name]
    s = rng.uniform(0.9, 1.1)
    x = -18 + 9 * (slot % 5) + rng.uniform(-1.5, 1.5)
    z = 8 + 14 * (slot // 5) + rng.uniform(-2, 2)
    y = 1.7 + rng.uniform(-0.1, 0.1)
    bh = safe_height(rng, 15, 120)
    x1 = 40 + 230 * (slot % 5) + rng.uniform(0, 20)
    y1 = 120 + 40 * (slot // 5) + rng.uniform(0, 10)
    return {
        "name": name,
        "truncated": rng.choice([0.0, 0.0, 0.0, 0.1, 0.15, 0.2, 0.3, 0.45, 0.6]),
        "occluded": rng.choice([0, 0, 1, 1, 2, 3] if occl_bias else [0, 0, 0, 1, 2]),
        "alpha": rng.uniform(-3, 3),
        "bbox": [x1, y1, x1 + rng.uniform(30, 200), y1 + bh],
        "h": h * s, "w": w * s, "l": l * s,
        "loc": [x, y, z],
        "ry": rng.uniform(-math.pi, math.pi),
    }


def perturb(rng, o, pos_sigma, score):
    d = dict(o)
    d["loc"] = [o["loc"][0] + rng.gauss(0, pos_sigma) + 0.011,
                o["loc"][1] + rng.gauss(0, pos_sigma * 0.3),
                o["loc"][2] + rng.gauss(0, pos_sigma) + 0.013]
    d["ry"] = o["ry"] + rng.gauss(0, 0.05) + 0.01
    d["bbox"] = [v + rng.gauss(0, 3) for v in o["bbox"]]
    d["truncated"], d["occluded"], d["score"] = -1, -1, score
    return d


def make_case(seed, frames, pos_sigma, miss, spurious, confuse):
    rng = random.Random(seed)
    gts, dts = [], []
    names = ["Car"] * 6 + ["Pedestrian"] * 3 + ["Cyclist"] * 2 + ["Van", "Person_sitting", "Truck"]
    for _ in range(frames):
        n = rng.randint(3, 10)
        slots = rng.sample(range(15), n)
        gt = [make_object(rng, rng.choice(names), s, seed % 2) for s in slots]
        dt = []
        for o in gt:
            if rng.random() < miss:
                continue
            d = perturb(rng, o, pos_sigma, rng.uniform(0.05, 0.99))
            if rng.random() < confuse:
                d["name"] = rng.choice(["Car", "Pedestrian", "Cyclist", "Van"])
            elif o["name"] in NEIGHBOUR and rng.random() < 0.5:
                d["name"] = NEIGHBOUR[o["name"]]  # a detector that does not know the class
            dt.append(d)
        free = [s for s in range(15) if s not in slots]
        for s in rng.sample(free, min(len(free), rng.randint(0, spurious))):
            d = perturb(rng, make_object(rng, rng.choice(CLASSES), s, 0), 0.0,
                        rng.uniform(0.05, 0.99))
            dt.append(d)
        if rng.random() < 0.5:  # a DontCare region, sometimes under a spurious detection
            s = free[0] if free else 0
            x1 = 40 + 230 * (s % 5)
            y1 = 120 + 40 * (s // 5)
            gt.append({"name": "DontCare", "truncated": -1, "occluded": -1, "alpha": -10,
                       "bbox": [x1 - 10, y1 - 10, x1 + 240, y1 + 140], "h": -1, "w": -1,
                       "l": -1, "loc": [-1000, -1000, -1000], "ry": -10})
        rng.shuffle(dt)
        gts.append(gt)
        dts.append(dt)
    return gts, dts


def parse(path):
    """Like `kitti_common.get_label_annos` for one file (float64 arrays, dims as l, h, w)."""
    rows = [ln.split() for ln in open(path).read().splitlines() if ln.strip()]
    a = {
        "name": np.array([r[0] for r in rows]),
        "truncated": np.array([float(r[1]) for r in rows]),
        "occluded": np.array([int(r[2]) for r in rows]),
        "alpha": np.array([float(r[3]) for r in rows]),
        "bbox": np.array([[float(v) for v in r[4:8]] for r in rows]).reshape(-1, 4),
        "dimensions": np.array([[float(v) for v in r[8:11]] for r in rows]).reshape(-1, 3)[:, [2, 0, 1]],
        "location": np.array([[float(v) for v in r[11:14]] for r in rows]).reshape(-1, 3),
        "rotation_y": np.array([float(r[14]) for r in rows]).reshape(-1),
    }
    if rows and len(rows[0]) == 16:
        a["score"] = np.array([float(r[15]) for r in rows])
    else:
        a["score"] = np.zeros(len(rows))
    return a


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kitti-utils", required=True,
                    help="directory holding the reference eval.py and rotate_iou.py")
    ap.add_argument("--out", required=True, help="fixture directory (tests/data/eval)")
    args = ap.parse_args()
    if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        print("warning: NUMBA_ENABLE_CUDASIM is not 1; the rotated IoU needs a GPU then",
              file=sys.stderr)
    ev = load_reference(args.kitti_utils)

    cases = {
        # name: (seed, frames, position noise, miss rate, max spurious, class confusion)
        "mixed_small_noise": (1, 24, 0.08, 0.1, 2, 0.05),
        "noisy_many_fp": (2, 24, 0.25, 0.2, 4, 0.1),
        "occluded_perturbed": (3, 20, 0.15, 0.05, 1, 0.0),
    }
    overlaps = np.array([[0.7, 0.5, 0.5], [0.7, 0.5, 0.5], [0.7, 0.5, 0.5]])[None]
    for name, (seed, frames, sigma, miss, spurious, confuse) in cases.items():
        gts, dts = make_case(seed, frames, sigma, miss, spurious, confuse)
        root = os.path.join(args.out, name)
        for sub, objs, scored in (("label_2", gts, False), ("results", dts, True)):
            os.makedirs(os.path.join(root, sub), exist_ok=True)
            for i, frame in enumerate(objs):
                with open(os.path.join(root, sub, f"{i:06d}.txt"), "w") as f:
                    f.write("".join(label_line(o, scored) + "\n" for o in frame))
        ids = [f"{i:06d}" for i in range(frames)]
        gt_annos = [parse(os.path.join(root, "label_2", f"{i}.txt")) for i in ids]
        dt_annos = [parse(os.path.join(root, "results", f"{i}.txt")) for i in ids]
        results = []
        for mi, metric in enumerate(METRICS):
            ret = ev.eval_class(gt_annos, dt_annos, [0, 1, 2], [0, 1, 2], mi, overlaps)
            prec = ret["precision"]  # [class, difficulty, overlap set, 41]
            r11 = ev.get_mAP11(prec) if hasattr(ev, "get_mAP11") else ev.get_mAP(prec)
            r40 = ev.get_mAP40(prec) if hasattr(ev, "get_mAP40") else ev.get_mAP_R40(prec)
            for ci, cls in enumerate(CLASSES):
                for di, diff in enumerate(DIFFS):
                    results.append({"class": cls, "difficulty": diff, "metric": metric,
                                    "ap_r11": float(r11[ci, di, 0]),
                                    "ap_r40": float(r40[ci, di, 0])})
        num_valid = {}
        for ci, cls in enumerate(CLASSES):
            for di, diff in enumerate(DIFFS):
                num_valid[f"{cls}/{diff}"] = int(sum(
                    ev.clean_data(g, d, ci, di)[0] for g, d in zip(gt_annos, dt_annos)))
        with open(os.path.join(root, "expected.json"), "w") as f:
            json.dump({"case": name, "frames": frames, "reference": "kitti_object_eval_python "
                       "(mmdet3d 1.4.0 wheel copy), NUMBA_ENABLE_CUDASIM=1",
                       "num_valid_gt": num_valid, "results": results}, f, indent=1)
        print(name, "done", file=sys.stderr)


if __name__ == "__main__":
    main()
