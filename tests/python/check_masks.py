#!/usr/bin/env python3
"""Checks pruneview's exported masks the way a PyTorch user would use them.

    check_masks.py MASKS WEIGHTS PRUNED

Uses only numpy and safetensors.numpy (no pruneview code): loads the masks, applies them to
the original weights (w * mask, in the weights' dtype) and checks that

- the result equals the pruned file for every masked key, and the kept elements are
  bit-identical to the weights;
- every other key of the pruned file is identical to the weights (dtype, shape, bytes), and
  both files have the same keys;
- each layer's actual sparsity 1 - mean(mask) is floor(s * n) / n for the allocation's
  sparsity s (the `pruneview.allocation` metadata; the same 1e-9 tolerance as pruneview);
- the masks' `source_sha256` metadata is the sha256 of the weights file, and the pruned file
  keeps the weights' metadata and carries the same allocation.

Prints a short summary; exits non-zero on any mismatch.
"""

import hashlib
import json
import math
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file


def metadata(path):
    with safe_open(path, framework="numpy") as f:
        return f.metadata() or {}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main(argv):
    if len(argv) != 4:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    masks_path, weights_path, pruned_path = argv[1:]
    masks = load_file(masks_path)
    weights = load_file(weights_path)
    pruned = load_file(pruned_path)
    mask_meta = metadata(masks_path)
    weights_meta = metadata(weights_path)
    pruned_meta = metadata(pruned_path)
    errors = []

    if "pruneview.allocation" not in mask_meta:
        errors.append(f"{masks_path}: no pruneview.allocation in __metadata__")
        alloc = {"layers": []}
    else:
        alloc = json.loads(mask_meta["pruneview.allocation"])
    sparsity = {l["name"]: float(l["sparsity"]) for l in alloc["layers"]}

    source = mask_meta.get("source_sha256")
    actual_sha = sha256(weights_path)
    if source != actual_sha:
        errors.append(f"source_sha256 {source} != sha256 of {weights_path} {actual_sha}")

    if pruned_meta.get("pruneview.allocation") is None or json.loads(
        pruned_meta["pruneview.allocation"]
    ) != alloc:
        errors.append(f"{pruned_path}: pruneview.allocation missing or differs from the masks'")
    for k, v in weights_meta.items():
        if k != "pruneview.allocation" and pruned_meta.get(k) != v:
            errors.append(f"{pruned_path}: metadata `{k}` not kept from the weights")

    if set(pruned) != set(weights):
        errors.append(
            f"keys differ: only in weights {sorted(set(weights) - set(pruned))}, "
            f"only in pruned {sorted(set(pruned) - set(weights))}"
        )
    if set(masks) != set(sparsity):
        errors.append(f"mask keys {sorted(masks)} != allocation layers {sorted(sparsity)}")

    total = total_pruned = 0
    for name, m in masks.items():
        if name not in weights or name not in pruned:
            errors.append(f"mask `{name}` has no weight")
            continue
        w, p = weights[name], pruned[name]
        if m.dtype != np.uint8 or m.shape != w.shape:
            errors.append(f"`{name}`: mask {m.dtype} {m.shape}, weight {w.shape}")
            continue
        if not np.isin(m, (0, 1)).all():
            errors.append(f"`{name}`: mask holds values other than 0 and 1")
        if p.dtype != w.dtype or p.shape != w.shape:
            errors.append(f"`{name}`: pruned is {p.dtype} {p.shape}, weight {w.dtype} {w.shape}")
            continue
        expected = (w * m).astype(w.dtype)
        if not np.array_equal(expected, p):
            bad = int(np.count_nonzero(expected != p))
            errors.append(f"`{name}`: w * mask differs from the pruned file at {bad} elements")
        keep = m.astype(bool)
        if p[keep].tobytes() != w[keep].tobytes():
            errors.append(f"`{name}`: kept elements are not bit-identical to the weights")
        n = m.size
        actual = 1.0 - float(m.mean()) if n else 0.0
        s = sparsity.get(name)
        if s is not None:
            want = min(n, math.floor(min(max(s, 0.0), 1.0) * n + 1e-9))
            pruned_n = n - int(m.astype(np.int64).sum())
            if pruned_n != want or not math.isclose(actual, want / n if n else 0.0, abs_tol=1e-12):
                errors.append(
                    f"`{name}`: sparsity {actual:.6f} ({pruned_n} of {n} pruned), "
                    f"allocation {s} wants floor(s*n)={want}"
                )
        total += n
        total_pruned += n - int(m.astype(np.int64).sum())
        print(f"  {name:45s} {str(w.dtype):8s} n={n:8d} s={s} actual={actual:.6f}")

    identical = 0
    for name, w in weights.items():
        if name in masks or name not in pruned:
            continue
        p = pruned[name]
        if p.dtype != w.dtype or p.shape != w.shape or p.tobytes() != w.tobytes():
            errors.append(f"`{name}`: unmasked tensor changed ({w.dtype} {w.shape} -> {p.dtype} {p.shape})")
        else:
            identical += 1

    print(
        f"{len(masks)} masks, {total_pruned} of {total} weights pruned; "
        f"{identical} other tensors identical; source sha256 {'ok' if source == actual_sha else 'MISMATCH'}"
    )
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
