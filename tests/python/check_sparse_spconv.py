#!/usr/bin/env python3
"""Checks pruneview's sparse 3-D backbone against spconv itself, and spconv against a fixture.

    check_sparse_spconv.py FIXTURE_DIR DUMP [--threads N] [--runs R]

FIXTURE_DIR is a voxel fixture of ../shared/reference (`second_kitti_000008/` or
`centerpoint_voxel_nuscenes/`); DUMP is `pruneview detect --dump` of that fixture's model and
`points_in.bin`. Needs torch, spconv (2.3.x, the CPU wheel is enough), numpy and safetensors;
not part of CI.

The backbone (VoxelBackBone8x, or VoxelResBackBone8x when the weights have `conv1.0.conv1`)
is built from spconv's own `SubMConv3d` / `SparseConv3d` modules with the fixture's weights
and run on the fixture's `voxel_features` and `voxel_coords`, R times with N torch threads.
For every stage (`x_conv1..4`, `encoded`), rows sorted by (batch, z, y, x), it prints how
many sites differ by more than 1e-3 between

- spconv and our dump (expected: none with one thread),
- spconv and the fixture,
- the first run and each later run (spconv's CPU kernels race with more than one thread).

Exits non-zero when our dump differs from a one-thread spconv run.
"""

import argparse
import sys

import numpy as np
import torch
from safetensors.numpy import load_file
import spconv.pytorch as spconv

STAGES = ["x_conv1", "x_conv2", "x_conv3", "x_conv4", "encoded"]
TOL = 1e-3


def f32(d):
    return {k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in d.items()}


def bn(w, prefix, c):
    m = torch.nn.BatchNorm1d(c, eps=1e-3)
    for a in ["weight", "bias", "running_mean", "running_var"]:
        getattr(m, a).data = torch.tensor(w[f"{prefix}.{a}"])
    return m.eval()


def conv(w, key, subm, stride=1, padding=1, kernel=3, ikey=None):
    wt = torch.tensor(w[f"{key}.weight"])
    cout, cin = wt.shape[0], wt.shape[-1]
    bias = f"{key}.bias" in w
    if subm:
        m = spconv.SubMConv3d(cin, cout, kernel, padding=padding, bias=bias, indice_key=ikey)
    else:
        m = spconv.SparseConv3d(
            cin, cout, kernel, stride=stride, padding=padding, bias=bias, indice_key=ikey
        )
    m.weight.data = wt
    if bias:
        m.bias.data = torch.tensor(w[f"{key}.bias"])
    return m, cout


def block(w, name, subm, ikey, stride=1, padding=1, kernel=3):
    p = f"backbone_3d.{name}"
    c, cout = conv(w, f"{p}.0", subm, stride, padding, kernel, ikey)
    return spconv.SparseSequential(c, bn(w, f"{p}.1", cout), torch.nn.ReLU())


class Res(spconv.SparseModule):
    """SparseBasicBlock: relu(bn2(conv2(relu(bn1(conv1(x))))) + x)."""

    def __init__(self, w, name, ikey):
        super().__init__()
        p = f"backbone_3d.{name}"
        self.c1, c = conv(w, f"{p}.conv1", True, ikey=ikey)
        self.b1 = bn(w, f"{p}.bn1", c)
        self.c2, c = conv(w, f"{p}.conv2", True, ikey=ikey)
        self.b2 = bn(w, f"{p}.bn2", c)

    def forward(self, x):
        y = self.c1(x)
        y = y.replace_feature(torch.relu(self.b1(y.features)))
        y = self.c2(y)
        y = y.replace_feature(torch.relu(self.b2(y.features) + x.features))
        return y


def stages(w):
    res = "backbone_3d.conv1.0.conv1.weight" in w
    first = [block(w, "conv_input", True, "subm1")]
    if res:
        s1 = [Res(w, "conv1.0", "res1"), Res(w, "conv1.1", "res1")]
    else:
        s1 = [block(w, "conv1.0", True, "subm1")]
    out = [spconv.SparseSequential(*first, *s1)]
    for i, pad in [(2, 1), (3, 1), (4, (0, 1, 1))]:
        layers = [block(w, f"conv{i}.0", False, f"spconv{i}", stride=2, padding=pad)]
        for j in (1, 2):
            if res:
                layers.append(Res(w, f"conv{i}.{j}", f"res{i}"))
            else:
                layers.append(block(w, f"conv{i}.{j}", True, f"subm{i}"))
        out.append(spconv.SparseSequential(*layers))
    out.append(
        block(w, "conv_out", False, "spconv_down2", stride=(2, 1, 1), padding=0, kernel=(3, 1, 1))
    )
    return out


def sorted_features(t):
    ind = t.indices.numpy()
    order = np.lexsort((ind[:, 3], ind[:, 2], ind[:, 1], ind[:, 0]))
    return ind[order], t.features.detach().numpy()[order]


def bad_rows(a, b):
    return int((np.abs(a - b).max(axis=1) > TOL).sum())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("fixture")
    ap.add_argument("dump")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    w = f32(load_file(f"{a.fixture}/weights.safetensors"))
    g = load_file(f"{a.fixture}/golden.safetensors")
    ours = load_file(a.dump)
    coords = g["voxel_coords"]
    idx = np.concatenate([np.zeros((len(coords), 1), np.int64), coords], 1).astype(np.int32)
    shape = SPARSE_SHAPE[a.fixture.rstrip("/").split("/")[-1]]
    net = stages(w)
    failed = False
    first = None
    for run in range(a.runs):
        x = spconv.SparseConvTensor(torch.tensor(g["voxel_features"]), torch.tensor(idx), shape, 1)
        results = []
        with torch.no_grad():
            for name, m in zip(STAGES, net):
                x = m(x)
                results.append((name, *sorted_features(x)))
        for name, ind, f in results:
            line = [f"run {run} {name}: {len(f)} sites"]
            if not np.array_equal(ind, g[f"sparse.{name}.indices"]):
                line.append("INDICES differ from the fixture")
            line.append(f"fixture {bad_rows(f, g[f'sparse.{name}.features'])} differ")
            k = f"sparse.{name}.features"
            if k in ours:
                n = bad_rows(f, ours[k])
                line.append(f"ours {n} differ")
                failed |= n > 0 and a.threads == 1
            if first is not None:
                prev = dict((nm, ff) for nm, _, ff in first)[name]
                line.append(f"run 0 {bad_rows(f, prev)} differ")
            print(", ".join(line))
        if first is None:
            first = results
    sys.exit(1 if failed else 0)


# OpenPCDet's `sparse_shape` `[D, H, W]` = the config's voxel grid [::-1] + [1, 0, 0].
SPARSE_SHAPE = {
    "second_kitti_000008": [41, 1600, 1408],
    "centerpoint_voxel_nuscenes": [41, 1024, 1024],
}

if __name__ == "__main__":
    main()
