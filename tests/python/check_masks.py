#!/usr/bin/env python3
"""Checks pruneview's exported masks the way a PyTorch user would use them.

    check_masks.py [--recovered] MASKS WEIGHTS PRUNED

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

With --recovered, PRUNED is a recovered file (pruned, then re-fitted: the kept weights,
biases and BatchNorm parameters and statistics may differ from WEIGHTS), and the checks are

- masks x pruned == pruned for every masked key: the pruned values are exactly 0 where the
  mask is 0 (recovery must not revive them);
- each layer's sparsity matches the allocation, and the masks' `source_sha256` is the
  weights', as above;
- the pruned file has exactly the weights' full state_dict key set, each with the same dtype
  and shape (values may differ); non-float tensors (`num_batches_tracked`, `global_step`)
  are byte-identical;
- the pruned file keeps the weights' metadata (`pruneview.config` may be added) and, when it
  carries `pruneview.allocation`, it is the masks' allocation.

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


def check_sparsity(name, m, sparsity, errors):
    """floor(s * n) of the layer's n weights are pruned, for the allocation's s."""
    n = m.size
    actual = 1.0 - float(m.mean()) if n else 0.0
    s = sparsity.get(name)
    pruned_n = n - int(m.astype(np.int64).sum())
    if s is not None:
        want = min(n, math.floor(min(max(s, 0.0), 1.0) * n + 1e-9))
        if pruned_n != want or not math.isclose(actual, want / n if n else 0.0, abs_tol=1e-12):
            errors.append(
                f"`{name}`: sparsity {actual:.6f} ({pruned_n} of {n} pruned), "
                f"allocation {s} wants floor(s*n)={want}"
            )
    return s, actual, pruned_n


def main(argv):
    args = argv[1:]
    recovered = "--recovered" in args
    args = [a for a in args if a != "--recovered"]
    if len(args) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    masks_path, weights_path, pruned_path = args
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

    pruned_alloc = pruned_meta.get("pruneview.allocation")
    if (pruned_alloc is None and not recovered) or (
        pruned_alloc is not None and json.loads(pruned_alloc) != alloc
    ):
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
        if recovered:
            # Recovery changes the kept weights; the pruned ones must stay exactly 0.
            expected = (p * m).astype(p.dtype)
            if not np.array_equal(expected, p):
                bad = int(np.count_nonzero(expected != p))
                errors.append(f"`{name}`: mask * pruned differs from the pruned file at {bad} elements")
            if np.count_nonzero(p[m == 0]):
                errors.append(f"`{name}`: nonzero values where the mask is 0")
        else:
            expected = (w * m).astype(w.dtype)
            if not np.array_equal(expected, p):
                bad = int(np.count_nonzero(expected != p))
                errors.append(f"`{name}`: w * mask differs from the pruned file at {bad} elements")
            keep = m.astype(bool)
            if p[keep].tobytes() != w[keep].tobytes():
                errors.append(f"`{name}`: kept elements are not bit-identical to the weights")
        s, actual, pruned_n = check_sparsity(name, m, sparsity, errors)
        total += m.size
        total_pruned += pruned_n
        print(f"  {name:45s} {str(w.dtype):8s} n={m.size:8d} s={s} actual={actual:.6f}")

    identical = changed = 0
    for name, w in weights.items():
        if name in masks or name not in pruned:
            continue
        p = pruned[name]
        if p.dtype != w.dtype or p.shape != w.shape:
            errors.append(f"`{name}`: dtype or shape changed ({w.dtype} {w.shape} -> {p.dtype} {p.shape})")
        elif p.tobytes() == w.tobytes():
            identical += 1
        elif recovered and np.issubdtype(w.dtype, np.floating):
            changed += 1
        else:
            errors.append(f"`{name}`: unmasked tensor changed ({w.dtype} {w.shape})")

    summary = (
        f"{len(masks)} masks, {total_pruned} of {total} weights pruned; "
        f"{identical} other tensors identical"
    )
    if recovered:
        summary = f"recovered: {summary}, {changed} other float tensors re-fitted"
    print(f"{summary}; source sha256 {'ok' if source == actual_sha else 'MISMATCH'}")
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
