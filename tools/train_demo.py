#!/usr/bin/env python3
"""Resumable PyTorch training of pruneview's demo detector (a reduced OpenPCDet PointPillars).

The model reproduces OpenPCDet's PointPillar (PillarVFE -> PointPillarScatter ->
BaseBEVBackbone -> AnchorHeadSingle) with the same module names, so `state_dict()` has
OpenPCDet's key names (`vfe.pfn_layers.0.linear.weight`, `backbone_2d.blocks.0.1.weight`, ...,
`dense_head.conv_cls.weight`). All sizes come from the OpenPCDet-style YAML
(default: tools/demo_pointpillar.yaml). Training follows OpenPCDet: AxisAlignedTargetAssigner
(nearest axis-aligned BEV IoU, MATCH_HEIGHT False), ResidualCoder, sigmoid focal loss,
weighted smooth-L1 with sin-difference, direction classifier CE.

Examples (see tools/README.md):
    python3 tools/train_demo.py --data ../shared/data/kitti/training --work-dir /tmp/pp \
        --epochs 80 --batch-size 4 --device cuda
    python3 tools/train_demo.py ... --resume                      # continue from work-dir
    python3 tools/train_demo.py --work-dir /tmp/pp --export demo.safetensors --export-only

Not run by CI (needs torch; minutes to hours of compute).
"""

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

HERE = Path(__file__).resolve().parent


# ----------------------------------------------------------------------------- config

def load_cfg(path):
    with open(path) as f:
        cfg = yaml.safe_load(f)
    if "_BASE_CONFIG_" in json.dumps(cfg):
        raise SystemExit(f"{path}: _BASE_CONFIG_ is not supported here; give a full config")
    return cfg


def voxel_processor(cfg):
    for p in cfg["DATA_CONFIG"]["DATA_PROCESSOR"]:
        if p["NAME"] == "transform_points_to_voxels":
            return p
    raise SystemExit("config has no transform_points_to_voxels processor")


def grid_size(cfg):
    pcr = np.array(cfg["DATA_CONFIG"]["POINT_CLOUD_RANGE"], dtype=np.float32)
    vs = np.array(voxel_processor(cfg)["VOXEL_SIZE"], dtype=np.float32)
    return np.round((pcr[3:6] - pcr[0:3]) / vs).astype(np.int64)  # nx, ny, nz


# ----------------------------------------------------------------------------- geometry

def limit_period(val, offset=0.5, period=math.pi):
    if isinstance(val, torch.Tensor):
        return val - torch.floor(val / period + offset) * period
    return val - np.floor(val / period + offset) * period


class Calib:
    def __init__(self, path):
        d = {}
        for line in open(path):
            if ":" not in line:
                continue
            k, v = line.split(":", 1)
            d[k.strip()] = np.array([float(x) for x in v.split()], dtype=np.float32)
        self.P2 = d["P2"].reshape(3, 4)
        self.R0 = d["R0_rect"].reshape(3, 3)
        self.V2C = d["Tr_velo_to_cam"].reshape(3, 4)

    def lidar_to_rect(self, pts):
        hom = np.hstack([pts, np.ones((pts.shape[0], 1), dtype=np.float32)])
        return hom @ (self.V2C.T @ self.R0.T)

    def rect_to_lidar(self, pts):
        hom = np.hstack([pts, np.ones((pts.shape[0], 1), dtype=np.float32)])
        r0 = np.eye(4, dtype=np.float32)
        r0[:3, :3] = self.R0
        v2c = np.eye(4, dtype=np.float32)
        v2c[:3, :4] = self.V2C
        return (hom @ np.linalg.inv((r0 @ v2c).T))[:, :3]

    def fov_flag(self, pts, img_hw):
        rect = self.lidar_to_rect(pts[:, :3])
        hom = np.hstack([rect, np.ones((rect.shape[0], 1), dtype=np.float32)])
        img = hom @ self.P2.T
        uv = img[:, :2] / rect[:, 2:3]
        depth = img[:, 2] - self.P2.T[3, 2]
        h, w = img_hw
        return (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h) & (depth >= 0)


def read_labels(path, calib, class_names):
    """KITTI label_2 -> LiDAR boxes (x, y, z centre, dx=l, dy=w, dz=h, heading), class ids 1..C."""
    boxes, labels = [], []
    if path.exists():
        for line in open(path):
            f = line.split()
            if len(f) < 15 or f[0] not in class_names:  # drops DontCare, Van, Misc, ...
                continue
            h, w, l = float(f[8]), float(f[9]), float(f[10])
            loc = np.array([[float(f[11]), float(f[12]), float(f[13])]], dtype=np.float32)
            ry = float(f[14])
            c = calib.rect_to_lidar(loc)[0]
            c[2] += h / 2
            boxes.append([c[0], c[1], c[2], l, w, h, -(math.pi / 2 + ry)])
            labels.append(class_names.index(f[0]) + 1)
    return (np.array(boxes, dtype=np.float32).reshape(-1, 7), np.array(labels, dtype=np.int64))


def rotate_z(pts, angle):
    c, s = math.cos(angle), math.sin(angle)
    x, y = pts[:, 0].copy(), pts[:, 1].copy()
    pts[:, 0] = x * c - y * s
    pts[:, 1] = x * s + y * c


def box_corners_bev(boxes):
    c, s = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    dx, dy = boxes[:, 3] / 2, boxes[:, 4] / 2
    out = []
    for sx, sy in ((1, 1), (1, -1), (-1, -1), (-1, 1)):
        out.append(np.stack([boxes[:, 0] + sx * dx * c - sy * dy * s,
                             boxes[:, 1] + sx * dx * s + sy * dy * c], -1))
    return np.stack(out, 1)  # (N, 4, 2)


# ----------------------------------------------------------------------------- data

class KittiFolder(torch.utils.data.Dataset):
    """A KITTI-layout folder: velodyne/*.bin, label_2/*.txt, calib/*.txt."""

    def __init__(self, cfg, root, train, ids=None, img_hw=(375, 1242), seed=0):
        self.cfg, self.root, self.train, self.img_hw, self.seed = cfg, Path(root), train, img_hw, seed
        if ids is None:
            ids = sorted(p.stem for p in (self.root / "velodyne").glob("*.bin"))
            if train:
                ids = [i for i in ids if (self.root / "label_2" / f"{i}.txt").exists()]
        if not ids:
            raise SystemExit(f"no frames in {self.root}/velodyne")
        self.ids = ids
        self.class_names = cfg["CLASS_NAMES"]
        dc = cfg["DATA_CONFIG"]
        self.pcr = np.array(dc["POINT_CLOUD_RANGE"], dtype=np.float32)
        vp = voxel_processor(cfg)
        self.vsize = np.array(vp["VOXEL_SIZE"], dtype=np.float32)
        self.max_pts = int(vp["MAX_POINTS_PER_VOXEL"])
        mv = vp["MAX_NUMBER_OF_VOXELS"]
        self.max_vox = int(mv["train" if train else "test"] if isinstance(mv, dict) else mv)
        self.grid = grid_size(cfg)
        self.fov = bool(dc.get("FOV_POINTS_ONLY", False))
        self.augs = {a["NAME"]: a for a in dc.get("DATA_AUGMENTOR", {}).get("AUG_CONFIG_LIST", [])}
        self.epoch = 0

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, idx):
        fid = self.ids[idx]
        # Per-sample RNG from (seed, epoch, idx): augmentations are reproducible on resume and
        # independent of the number of loader workers.
        rng = np.random.default_rng([self.seed, self.epoch, idx])
        pts = np.fromfile(self.root / "velodyne" / f"{fid}.bin", dtype=np.float32).reshape(-1, 4).copy()
        calib = Calib(self.root / "calib" / f"{fid}.txt")
        if self.fov:
            pts = pts[calib.fov_flag(pts, self.img_hw)]
        boxes, labels = read_labels(self.root / "label_2" / f"{fid}.txt", calib, self.class_names)
        if self.train:
            pts, boxes = self.augment(pts, boxes, rng)
        boxes[:, 6] = limit_period(boxes[:, 6], 0.5, 2 * math.pi)
        # mask_points_and_boxes_outside_range (boxes: at least one BEV corner in range)
        p = self.pcr
        m = (pts[:, 0] >= p[0]) & (pts[:, 0] <= p[3]) & (pts[:, 1] >= p[1]) & (pts[:, 1] <= p[4])
        pts = pts[m]
        if len(boxes):
            cr = box_corners_bev(boxes)
            inr = ((cr[..., 0] >= p[0]) & (cr[..., 0] <= p[3]) & (cr[..., 1] >= p[1]) & (cr[..., 1] <= p[4])).any(1)
            boxes, labels = boxes[inr], labels[inr]
        if self.train:
            pts = pts[rng.permutation(len(pts))]
        voxels, coords, npts = self.voxelize(pts, rng if self.train else None)
        return dict(id=fid, voxels=voxels, coords=coords, num_points=npts,
                    gt_boxes=np.hstack([boxes, labels[:, None].astype(np.float32)]))

    def augment(self, pts, boxes, rng):
        a = self.augs
        if "random_world_flip" in a and "x" in a["random_world_flip"]["ALONG_AXIS_LIST"]:
            if rng.random() < 0.5:
                pts[:, 1] = -pts[:, 1]
                boxes[:, 1] = -boxes[:, 1]
                boxes[:, 6] = -boxes[:, 6]
        if "random_world_rotation" in a:
            lo, hi = a["random_world_rotation"]["WORLD_ROT_ANGLE"]
            ang = rng.uniform(lo, hi)
            rotate_z(pts, ang)
            rotate_z(boxes, ang)
            boxes[:, 6] += ang
        if "random_world_scaling" in a:
            lo, hi = a["random_world_scaling"]["WORLD_SCALE_RANGE"]
            s = rng.uniform(lo, hi)
            pts[:, :3] *= s
            boxes[:, :6] *= s
        return pts, boxes

    def voxelize(self, pts, rng):
        """Points -> (P, max_pts, 4) pillars, int32 zyx coords, counts (file order within pillars)."""
        c = np.floor((pts[:, :3] - self.pcr[:3]) / self.vsize).astype(np.int64)
        ok = ((c >= 0) & (c < self.grid)).all(1)
        pts, c = pts[ok], c[ok]
        nx, ny, nz = self.grid
        lin = (c[:, 2] * ny + c[:, 1]) * nx + c[:, 0]
        uniq, first, inv = np.unique(lin, return_index=True, return_inverse=True)
        # keep the voxels in first-appearance order (as spconv does), cap at max_vox
        order = np.argsort(first, kind="stable")
        rank_of = np.empty_like(order)
        rank_of[order] = np.arange(len(order))
        vid = rank_of[inv]
        keep_v = len(uniq) if len(uniq) <= self.max_vox else self.max_vox
        srt = np.argsort(vid, kind="stable")
        vs = vid[srt]
        start = np.searchsorted(vs, np.arange(len(uniq)))
        slot = np.arange(len(vs)) - start[vs]
        sel = (slot < self.max_pts) & (vs < keep_v)
        voxels = np.zeros((keep_v, self.max_pts, pts.shape[1]), dtype=np.float32)
        voxels[vs[sel], slot[sel]] = pts[srt[sel]]
        npts = np.minimum(np.bincount(vid, minlength=len(uniq))[:keep_v], self.max_pts).astype(np.int32)
        vc = c[first[order][:keep_v]]
        coords = np.stack([vc[:, 2], vc[:, 1], vc[:, 0]], 1).astype(np.int32)
        return voxels, coords, npts


def collate(batch):
    coords = [np.pad(b["coords"], ((0, 0), (1, 0)), constant_values=i) for i, b in enumerate(batch)]
    ng = max(1, max(len(b["gt_boxes"]) for b in batch))
    gt = np.zeros((len(batch), ng, 8), dtype=np.float32)
    for i, b in enumerate(batch):
        gt[i, :len(b["gt_boxes"])] = b["gt_boxes"]
    return dict(ids=[b["id"] for b in batch],
                voxels=torch.from_numpy(np.concatenate([b["voxels"] for b in batch])),
                coords=torch.from_numpy(np.concatenate(coords)).long(),
                num_points=torch.from_numpy(np.concatenate([b["num_points"] for b in batch])),
                gt_boxes=torch.from_numpy(gt), batch_size=len(batch))


# ----------------------------------------------------------------------------- model

class PFNLayer(nn.Module):
    def __init__(self, cin, cout, use_norm=True, last_layer=False):
        super().__init__()
        self.last_vfe = last_layer
        if not last_layer:
            cout = cout // 2
        if use_norm:
            self.linear = nn.Linear(cin, cout, bias=False)
            self.norm = nn.BatchNorm1d(cout, eps=1e-3, momentum=0.01)
        else:
            self.linear = nn.Linear(cin, cout, bias=True)
            self.norm = None

    def forward(self, x):
        x = self.linear(x)
        if self.norm is not None:
            x = self.norm(x.permute(0, 2, 1)).permute(0, 2, 1)
        x = F.relu(x)
        x_max = x.max(dim=1, keepdim=True)[0]
        if self.last_vfe:
            return x_max
        return torch.cat([x, x_max.repeat(1, x.shape[1], 1)], dim=2)


class PillarVFE(nn.Module):
    def __init__(self, cfg, pcr, vsize):
        super().__init__()
        m = cfg["MODEL"]["VFE"]
        self.use_abs = m.get("USE_ABSLOTE_XYZ", True)
        self.with_distance = m.get("WITH_DISTANCE", False)
        cin = 4 + 6 if self.use_abs else 4 + 3
        if self.with_distance:
            cin += 1
        filters = [cin] + list(m["NUM_FILTERS"])
        self.pfn_layers = nn.ModuleList([
            PFNLayer(filters[i], filters[i + 1], m.get("USE_NORM", True), i >= len(filters) - 2)
            for i in range(len(filters) - 1)])
        self.vsize = [float(v) for v in vsize]
        self.pcr = [float(v) for v in pcr]
        self.out_channels = filters[-1]

    def forward(self, voxels, num_points, coords):
        vx, vy, vz = self.vsize
        pm = voxels[:, :, :3].sum(1, keepdim=True) / num_points.type_as(voxels).clamp(min=1).view(-1, 1, 1)
        f_cluster = voxels[:, :, :3] - pm
        f_center = torch.zeros_like(voxels[:, :, :3])
        f_center[:, :, 0] = voxels[:, :, 0] - (coords[:, 3].to(voxels.dtype).unsqueeze(1) * vx + (vx / 2 + self.pcr[0]))
        f_center[:, :, 1] = voxels[:, :, 1] - (coords[:, 2].to(voxels.dtype).unsqueeze(1) * vy + (vy / 2 + self.pcr[1]))
        f_center[:, :, 2] = voxels[:, :, 2] - (coords[:, 1].to(voxels.dtype).unsqueeze(1) * vz + (vz / 2 + self.pcr[2]))
        feats = [voxels if self.use_abs else voxels[..., 3:], f_cluster, f_center]
        if self.with_distance:
            feats.append(torch.norm(voxels[:, :, :3], 2, 2, keepdim=True))
        x = torch.cat(feats, -1)
        mask = num_points.unsqueeze(1).int() > torch.arange(voxels.shape[1], device=voxels.device).view(1, -1)
        x = x * mask.unsqueeze(-1).type_as(x)
        for pfn in self.pfn_layers:
            x = pfn(x)
        return x.squeeze(1)


class BaseBEVBackbone(nn.Module):
    def __init__(self, cfg, cin):
        super().__init__()
        m = cfg["MODEL"]["BACKBONE_2D"]
        nums, strides, filters = m["LAYER_NUMS"], m["LAYER_STRIDES"], m["NUM_FILTERS"]
        ups, upf = m["UPSAMPLE_STRIDES"], m["NUM_UPSAMPLE_FILTERS"]
        cins = [cin] + list(filters[:-1])
        self.blocks, self.deblocks = nn.ModuleList(), nn.ModuleList()
        for i in range(len(nums)):
            layers = [nn.ZeroPad2d(1), nn.Conv2d(cins[i], filters[i], 3, stride=strides[i], padding=0, bias=False),
                      nn.BatchNorm2d(filters[i], eps=1e-3, momentum=0.01), nn.ReLU()]
            for _ in range(nums[i]):
                layers += [nn.Conv2d(filters[i], filters[i], 3, padding=1, bias=False),
                           nn.BatchNorm2d(filters[i], eps=1e-3, momentum=0.01), nn.ReLU()]
            self.blocks.append(nn.Sequential(*layers))
            s = ups[i]
            if s >= 1:
                self.deblocks.append(nn.Sequential(
                    nn.ConvTranspose2d(filters[i], upf[i], int(s), stride=int(s), bias=False),
                    nn.BatchNorm2d(upf[i], eps=1e-3, momentum=0.01), nn.ReLU()))
            else:
                k = int(round(1 / s))
                self.deblocks.append(nn.Sequential(
                    nn.Conv2d(filters[i], upf[i], k, stride=k, bias=False),
                    nn.BatchNorm2d(upf[i], eps=1e-3, momentum=0.01), nn.ReLU()))
        self.out_channels = sum(upf)

    def forward(self, x):
        ups = []
        for blk, de in zip(self.blocks, self.deblocks):
            x = blk(x)
            ups.append(de(x))
        return torch.cat(ups, 1) if len(ups) > 1 else ups[0]


def make_anchors(cfg):
    """(A, 7) anchors, flat order ((y * W + x) * n_cls + cls) * n_rot + rot, plus per-anchor class
    index (0-based) and per-class thresholds; identical to OpenPCDet's AnchorGenerator layout."""
    pcr = np.array(cfg["DATA_CONFIG"]["POINT_CLOUD_RANGE"], dtype=np.float32)
    g = grid_size(cfg)
    gens = cfg["MODEL"]["DENSE_HEAD"]["ANCHOR_GENERATOR_CONFIG"]
    stride = gens[0]["feature_map_stride"]
    fx, fy = int(g[0] // stride), int(g[1] // stride)
    per_cls = []
    for gen in gens:
        if gen.get("align_center", False):
            xs_, ys_ = (pcr[3] - pcr[0]) / fx, (pcr[4] - pcr[1]) / fy
            xo, yo = xs_ / 2, ys_ / 2
        else:
            xs_, ys_ = (pcr[3] - pcr[0]) / (fx - 1), (pcr[4] - pcr[1]) / (fy - 1)
            xo = yo = 0.0
        xs = pcr[0] + xo + np.arange(fx) * xs_
        ys = pcr[1] + yo + np.arange(fy) * ys_
        sizes, rots, zs = gen["anchor_sizes"], gen["anchor_rotations"], gen["anchor_bottom_heights"]
        a = np.zeros((fy, fx, len(zs), len(sizes), len(rots), 7), dtype=np.float32)
        a[..., 0] = xs[None, :, None, None, None]
        a[..., 1] = ys[:, None, None, None, None]
        a[..., 2] = np.array(zs)[None, None, :, None, None]
        a[..., 3:6] = np.array(sizes)[None, None, None, :, None, :]
        a[..., 6] = np.array(rots)[None, None, None, None, :]
        a[..., 2] += a[..., 5] / 2
        per_cls.append(a.reshape(fy, fx, -1, 7))
    n_per = [p.shape[2] for p in per_cls]
    anchors = np.concatenate(per_cls, 2)  # (fy, fx, sum n_per, 7)
    cls_idx = np.concatenate([np.full(n, i) for i, n in enumerate(n_per)])
    cls_idx = np.broadcast_to(cls_idx, anchors.shape[:3]).reshape(-1)
    return anchors.reshape(-1, 7), cls_idx, sum(n_per), (fy, fx)


class AnchorHeadSingle(nn.Module):
    def __init__(self, cfg, cin):
        super().__init__()
        h = cfg["MODEL"]["DENSE_HEAD"]
        self.num_class = len(cfg["CLASS_NAMES"])
        anchors, cls_idx, self.na_loc, self.fmap = make_anchors(cfg)
        self.register_buffer("anchors", torch.from_numpy(anchors), persistent=False)
        self.register_buffer("anchor_cls", torch.from_numpy(cls_idx.copy()), persistent=False)
        self.conv_cls = nn.Conv2d(cin, self.na_loc * self.num_class, 1)
        self.conv_box = nn.Conv2d(cin, self.na_loc * 7, 1)
        self.use_dir = h.get("USE_DIRECTION_CLASSIFIER", False)
        self.nbins = h.get("NUM_DIR_BINS", 2)
        if self.use_dir:
            self.conv_dir_cls = nn.Conv2d(cin, self.na_loc * self.nbins, 1)
        nn.init.constant_(self.conv_cls.bias, -math.log((1 - 0.01) / 0.01))
        nn.init.normal_(self.conv_box.weight, mean=0, std=0.001)

    def forward(self, x):
        if tuple(x.shape[2:]) != self.fmap:
            raise RuntimeError(f"BEV features {tuple(x.shape[2:])} != anchor map {self.fmap}: "
                               "feature_map_stride does not match the backbone")
        b = x.shape[0]
        cls = self.conv_cls(x).permute(0, 2, 3, 1).reshape(b, -1, self.num_class)
        box = self.conv_box(x).permute(0, 2, 3, 1).reshape(b, -1, 7)
        dirc = self.conv_dir_cls(x).permute(0, 2, 3, 1).reshape(b, -1, self.nbins) if self.use_dir else None
        return cls, box, dirc


class PointPillar(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        pcr = cfg["DATA_CONFIG"]["POINT_CLOUD_RANGE"]
        vsize = voxel_processor(cfg)["VOXEL_SIZE"]
        self.grid = grid_size(cfg)
        self.vfe = PillarVFE(cfg, pcr, vsize)
        nbev = cfg["MODEL"]["MAP_TO_BEV"]["NUM_BEV_FEATURES"]
        assert nbev == self.vfe.out_channels, "NUM_BEV_FEATURES must equal the last VFE filter count"
        self.nbev = nbev
        self.backbone_2d = BaseBEVBackbone(cfg, nbev)
        self.dense_head = AnchorHeadSingle(cfg, self.backbone_2d.out_channels)

    def forward(self, voxels, num_points, coords, batch_size):
        pf = self.vfe(voxels, num_points, coords)
        nx, ny, nz = [int(v) for v in self.grid]
        canvas = pf.new_zeros(batch_size, self.nbev, nz * ny * nx)
        idx = coords[:, 1] + coords[:, 2] * nx + coords[:, 3]
        canvas[coords[:, 0], :, idx] = pf  # advanced indexing: (P, C) rows
        bev = canvas.view(batch_size, self.nbev * nz, ny, nx)
        return self.dense_head(self.backbone_2d(bev))


# ----------------------------------------------------------------------------- targets / loss

def nearest_bev(boxes):
    rot = limit_period(boxes[:, 6], 0.5, math.pi).abs()
    dims = torch.where((rot < math.pi / 4)[:, None], boxes[:, [3, 4]], boxes[:, [4, 3]])
    return torch.cat([boxes[:, :2] - dims / 2, boxes[:, :2] + dims / 2], 1)


def iou_aligned(a, b):
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-6)


def encode(boxes, anchors):
    xa, ya, za, dxa, dya, dza, ra = torch.split(anchors, 1, -1)
    xg, yg, zg, dxg, dyg, dzg, rg = torch.split(boxes, 1, -1)
    dxa, dya, dza = dxa.clamp(min=1e-5), dya.clamp(min=1e-5), dza.clamp(min=1e-5)
    dxg, dyg, dzg = dxg.clamp(min=1e-5), dyg.clamp(min=1e-5), dzg.clamp(min=1e-5)
    diag = torch.sqrt(dxa ** 2 + dya ** 2)
    return torch.cat([(xg - xa) / diag, (yg - ya) / diag, (zg - za) / dza,
                      torch.log(dxg / dxa), torch.log(dyg / dya), torch.log(dzg / dza), rg - ra], -1)


class TargetAssigner:
    """OpenPCDet's AxisAlignedTargetAssigner with POS_FRACTION -1, MATCH_HEIGHT False."""

    def __init__(self, cfg, anchors, anchor_cls):
        gens = cfg["MODEL"]["DENSE_HEAD"]["ANCHOR_GENERATOR_CONFIG"]
        self.matched = [g["matched_threshold"] for g in gens]
        self.unmatched = [g["unmatched_threshold"] for g in gens]
        self.anchors, self.anchor_cls = anchors, anchor_cls
        self.groups = [torch.nonzero(anchor_cls == c).squeeze(1) for c in range(len(gens))]
        self.anchor_bev = [nearest_bev(anchors[g]) for g in self.groups]

    @torch.no_grad()
    def assign(self, gt_boxes):
        B, A = gt_boxes.shape[0], self.anchors.shape[0]
        dev = self.anchors.device
        labels = torch.full((B, A), -1, dtype=torch.long, device=dev)
        targets = torch.zeros((B, A, 7), device=dev)
        for b in range(B):
            gt = gt_boxes[b]
            gt = gt[gt[:, 7] > 0]
            for c, grp in enumerate(self.groups):
                g = gt[gt[:, 7].long() == c + 1][:, :7]
                lab = torch.full((len(grp),), -1, dtype=torch.long, device=dev)
                if len(g) == 0:
                    labels[b, grp] = 0
                    continue
                ov = iou_aligned(self.anchor_bev[c], nearest_bev(g))  # (Ac, G)
                a_max, a_arg = ov.max(1)
                g_max = ov.max(0)[0]
                g_max[g_max == 0] = -1
                force_a = torch.nonzero(ov == g_max[None, :], as_tuple=True)[0]
                gt_ids = torch.full((len(grp),), -1, dtype=torch.long, device=dev)
                gt_ids[force_a] = a_arg[force_a]  # OpenPCDet: gt_inds_force = anchor_to_gt_argmax[...]
                pos = a_max >= self.matched[c]
                gt_ids[pos] = a_arg[pos]
                lab[force_a] = c + 1
                lab[pos] = c + 1
                lab[a_max < self.unmatched[c]] = 0
                lab[force_a] = c + 1
                fg = lab > 0
                tgt = torch.zeros((len(grp), 7), device=dev)
                tgt[fg] = encode(g[gt_ids[fg]], self.anchors[grp][fg])
                labels[b, grp] = lab
                targets[b, grp] = tgt
        return labels, targets


def sigmoid_focal(logits, target, weights, alpha=0.25, gamma=2.0):
    p = torch.sigmoid(logits)
    alpha_w = target * alpha + (1 - target) * (1 - alpha)
    pt = target * (1.0 - p) + (1.0 - target) * p
    bce = torch.clamp(logits, min=0) - logits * target + torch.log1p(torch.exp(-torch.abs(logits)))
    return alpha_w * pt.pow(gamma) * bce * weights.unsqueeze(-1)


def smooth_l1(diff, beta):
    n = diff.abs()
    return torch.where(n < beta, 0.5 * n ** 2 / beta, n - 0.5 * beta)


def compute_loss(cfg, head, cls_preds, box_preds, dir_preds, labels, targets):
    lw = cfg["MODEL"]["DENSE_HEAD"]["LOSS_CONFIG"]["LOSS_WEIGHTS"]
    B = labels.shape[0]
    num_class = cls_preds.shape[-1]
    pos = labels > 0
    neg = labels == 0
    norm = pos.sum(1, keepdim=True).float().clamp(min=1.0)
    cls_w = (neg.float() + pos.float()) / norm
    reg_w = pos.float() / norm
    cared = labels >= 0
    onehot = torch.zeros(*labels.shape, num_class + 1, device=labels.device)
    onehot.scatter_(-1, (labels * cared.long()).unsqueeze(-1), 1.0)
    cls_loss = sigmoid_focal(cls_preds, onehot[..., 1:], cls_w).sum() / B * lw["cls_weight"]

    # sin-difference on the heading
    bp, bt = box_preds.clone(), targets.clone()
    s = torch.sin(box_preds[..., 6:7]) * torch.cos(targets[..., 6:7])
    t = torch.cos(box_preds[..., 6:7]) * torch.sin(targets[..., 6:7])
    bp = torch.cat([box_preds[..., :6], s], -1)
    bt = torch.cat([targets[..., :6], t], -1)
    cw = torch.tensor(lw["code_weights"], device=bp.device)
    loc = smooth_l1(bp - bt, 1.0 / 9.0) * cw * reg_w.unsqueeze(-1)
    loc_loss = loc.sum() / B * lw["loc_weight"]

    dir_loss = torch.zeros((), device=bp.device)
    if dir_preds is not None:
        h = cfg["MODEL"]["DENSE_HEAD"]
        nb = h.get("NUM_DIR_BINS", 2)
        rot_gt = targets[..., 6] + head.anchors[None, :, 6]
        off = limit_period(rot_gt - h["DIR_OFFSET"], 0.0, 2 * math.pi)
        dt = torch.floor(off / (2 * math.pi / nb)).long().clamp(0, nb - 1)
        w = pos.float() / pos.float().sum(-1, keepdim=True).clamp(min=1.0)
        ce = F.cross_entropy(dir_preds.permute(0, 2, 1), dt, reduction="none")
        dir_loss = (ce * w).sum() / B * lw["dir_weight"]
    return cls_loss, loc_loss, dir_loss


# ----------------------------------------------------------------------------- export

def export_safetensors(model, cfg, out, global_step=0):
    from safetensors.torch import save_file
    sd = model.state_dict()
    tensors = {"global_step": torch.tensor([global_step], dtype=torch.int64)}
    for k, v in sd.items():
        v = v.detach().cpu().contiguous()
        tensors[k] = v if k.endswith("num_batches_tracked") else v.float()
    meta = {"pruneview.config": json.dumps(cfg, separators=(",", ":"))}
    tmp = str(out) + ".tmp"
    save_file(tensors, tmp, metadata=meta)
    os.replace(tmp, out)
    size = os.path.getsize(out)
    print(f"exported {len(tensors)} tensors, "
          f"{sum(v.numel() for k, v in tensors.items() if v.is_floating_point()):,} f32 values, "
          f"{size / 1e6:.2f} MB -> {out}")
    if size > 10 * 1000 * 1000:
        print("WARNING: export is larger than 10 MB", file=sys.stderr)
    return size


def load_exported(model, path):
    """Loads weights written by `export_safetensors` (the inverse mapping): every model key must
    be present with its shape, so a file for another architecture is refused, not half-loaded."""
    from safetensors.torch import load_file
    tensors = load_file(path)
    sd = model.state_dict()
    missing = [k for k in sd if k not in tensors]
    if missing:
        raise SystemExit(f"{path}: missing {len(missing)} tensors, e.g. {missing[:3]}")
    for k, v in sd.items():
        if tensors[k].shape != v.shape:
            raise SystemExit(f"{path}: {k} has shape {tuple(tensors[k].shape)}, model needs {tuple(v.shape)}")
    model.load_state_dict({k: tensors[k].to(v.dtype) for k, v in sd.items()})
    print(f"initialised from {path} ({len(sd)} tensors)")


@torch.no_grad()
def precise_bn(model, ds, bs, dev, iters, seed=0):
    """Re-estimates every BatchNorm's running mean/var as the plain average over `iters`
    training batches (train-mode forward, no gradients). With OpenPCDet's BN momentum 0.01
    the running stats lag the weights badly in short runs, so eval-mode (and pruneview, which
    folds the running stats) would see a different network than training did."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    moms = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    g = torch.Generator()
    g.manual_seed(seed + 12345)
    done = 0
    while done < iters:
        order = torch.randperm(len(ds), generator=g).tolist()
        for i in range(0, len(order), bs):
            b = collate([ds[j] for j in order[i:i + bs]])
            model(b["voxels"].to(dev), b["num_points"].to(dev), b["coords"].to(dev), b["batch_size"])
            done += 1
            if done >= iters:
                break
    for m, mom in zip(bns, moms):
        m.momentum = mom
    model.eval()
    print(f"precise BN: running stats re-estimated over {done} batches")


# ----------------------------------------------------------------------------- training

def save_ckpt(path, model, opt, sched, epoch, it_in_epoch, global_step, args):
    state = dict(model=model.state_dict(), optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                 epoch=epoch, it_in_epoch=it_in_epoch, global_step=global_step,
                 rng=dict(python=random.getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state(),
                          cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None),
                 args=vars(args))
    tmp = str(path) + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)
    latest = Path(path).parent / "latest.pth"
    tmp2 = str(latest) + ".tmp"
    torch.save(state, tmp2)
    os.replace(tmp2, latest)


def build_optimizer(model, cfg, args, total_steps):
    o = cfg.get("OPTIMIZATION", {})
    lr = args.lr if args.lr is not None else o.get("LR", 0.003)
    wd = o.get("WEIGHT_DECAY", 0.01)
    moms = o.get("MOMS", [0.95, 0.85])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(moms[0], 0.99), weight_decay=wd)
    if args.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=lr, total_steps=max(total_steps, 2) + 1, pct_start=o.get("PCT_START", 0.4),
            div_factor=o.get("DIV_FACTOR", 10), final_div_factor=1e4, anneal_strategy="cos",
            cycle_momentum=True, base_momentum=moms[1], max_momentum=moms[0])
    else:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total_steps, 1), eta_min=lr * 1e-3)
    return opt, sched


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(HERE / "demo_pointpillar.yaml"))
    ap.add_argument("--data", help="KITTI-layout folder with velodyne/, label_2/, calib/")
    ap.add_argument("--split", help="optional text file of frame ids (one per line)")
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--epochs", type=int, default=None, help="default: OPTIMIZATION.NUM_EPOCHS")
    ap.add_argument("--batch-size", type=int, default=None, help="default: OPTIMIZATION.BATCH_SIZE_PER_GPU")
    ap.add_argument("--repeat", type=int, default=1, help="repeat the frame list N times per epoch (tiny sets)")
    ap.add_argument("--lr", type=float, default=None, help="default: OPTIMIZATION.LR")
    ap.add_argument("--schedule", choices=["onecycle", "cosine"], default="onecycle")
    ap.add_argument("--no-aug", action="store_true", help="disable augmentations (overfitting checks)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ckpt-every", type=int, default=500, help="also checkpoint every N iterations (0: epochs only)")
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--max-iters", type=int, default=None, help="stop (after checkpointing) at this global step")
    ap.add_argument("--image-size", default="375x1242", help="HxW of image_2 for FOV_POINTS_ONLY")
    ap.add_argument("--resume", action="store_true", help="continue from WORK_DIR/latest.pth")
    ap.add_argument("--init", metavar="WEIGHTS.safetensors",
                    help="start from an exported model's weights (fine-tuning; fresh optimizer and schedule)")
    ap.add_argument("--export", help="write OUT.safetensors (OpenPCDet key names + pruneview.config)")
    ap.add_argument("--export-only", action="store_true", help="export from WORK_DIR/latest.pth, no training")
    ap.add_argument("--precise-bn", type=int, default=0, metavar="N",
                    help="before exporting, re-estimate BN running stats over N training batches "
                         "(needs --data; recommended for short runs)")
    args = ap.parse_args()

    cfg = load_cfg(args.config)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    dev = torch.device(args.device)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    model = PointPillar(cfg).to(dev)
    nparam = sum(p.numel() for p in model.parameters())

    if args.export_only:
        ck = torch.load(work / "latest.pth", map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"])
        if not args.export:
            raise SystemExit("--export-only needs --export OUT.safetensors")
        if args.precise_bn:
            if not args.data:
                raise SystemExit("--precise-bn needs --data")
            h, w = (int(v) for v in args.image_size.lower().split("x"))
            ids = [l.strip() for l in open(args.split) if l.strip()] if args.split else None
            ds = KittiFolder(cfg, args.data, train=True, ids=ids, img_hw=(h, w), seed=args.seed)
            if args.no_aug:
                ds.augs = {}
            bs = args.batch_size or cfg.get("OPTIMIZATION", {}).get("BATCH_SIZE_PER_GPU", 4)
            precise_bn(model, ds, bs, dev, args.precise_bn, args.seed)
        export_safetensors(model, cfg, args.export, ck["global_step"])
        return

    if not args.data:
        raise SystemExit("--data is required for training")
    o = cfg.get("OPTIMIZATION", {})
    epochs = args.epochs if args.epochs is not None else o.get("NUM_EPOCHS", 80)
    bs = args.batch_size if args.batch_size is not None else o.get("BATCH_SIZE_PER_GPU", 4)
    ids = [l.strip() for l in open(args.split) if l.strip()] if args.split else None
    h, w = (int(v) for v in args.image_size.lower().split("x"))
    ds = KittiFolder(cfg, args.data, train=True, ids=ids, img_hw=(h, w), seed=args.seed)
    if args.no_aug:
        ds.augs = {}
    n_items = len(ds) * args.repeat
    iters_per_epoch = max(1, n_items // bs) if n_items >= bs else 1
    total = epochs * iters_per_epoch
    opt, sched = build_optimizer(model, cfg, args, total)
    assigner = TargetAssigner(cfg, model.dense_head.anchors, model.dense_head.anchor_cls)
    clip = o.get("GRAD_NORM_CLIP", 10)

    start_epoch, skip, step = 0, 0, 0
    if args.init and not args.resume:
        load_exported(model, args.init)
    if args.resume:
        p = work / "latest.pth"
        if not p.exists():
            raise SystemExit(f"--resume: {p} not found")
        ck = torch.load(p, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        start_epoch, skip, step = ck["epoch"], ck["it_in_epoch"], ck["global_step"]
        r = ck["rng"]
        random.setstate(r["python"])
        np.random.set_state(r["numpy"])
        torch.set_rng_state(r["torch"])
        if r.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(r["cuda"])
        print(f"resumed from {p}: epoch {start_epoch}, iteration {skip} of it, global step {step}")

    print(f"model: {nparam:,} parameters; {len(ds)} frames x{args.repeat}, batch {bs}, "
          f"{iters_per_epoch} it/epoch, {epochs} epochs ({total} its) on {dev}")
    with open(work / "config.json", "w") as f:
        json.dump(cfg, f, indent=1)
    log = open(work / "train_log.csv", "a")
    model.train()
    done = False
    for epoch in range(start_epoch, epochs):
        ds.epoch = epoch
        g = torch.Generator()
        g.manual_seed(args.seed * 100003 + epoch)
        order = torch.cat([torch.randperm(len(ds), generator=g) for _ in range(args.repeat)]).tolist()
        batches = [order[i * bs:(i + 1) * bs] for i in range(iters_per_epoch)]
        batches = batches[skip:] if epoch == start_epoch else batches
        first_it = skip if epoch == start_epoch else 0
        loader = torch.utils.data.DataLoader(ds, batch_sampler=batches, collate_fn=collate,
                                             num_workers=args.workers,
                                             persistent_workers=False)
        t0 = time.time()
        for it, batch in enumerate(loader, start=first_it):
            vox = batch["voxels"].to(dev, non_blocking=True)
            npt = batch["num_points"].to(dev)
            crd = batch["coords"].to(dev)
            gt = batch["gt_boxes"].to(dev)
            cls_p, box_p, dir_p = model(vox, npt, crd, batch["batch_size"])
            labels, targets = assigner.assign(gt)
            lc, ll, ld = compute_loss(cfg, model.dense_head, cls_p, box_p, dir_p, labels, targets)
            loss = lc + ll + ld
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gn = nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            sched.step()
            step += 1
            dt = time.time() - t0
            t0 = time.time()
            npos = int((labels > 0).sum())
            log.write(f"{step},{epoch},{it},{loss.item():.5f},{lc.item():.5f},{ll.item():.5f},{ld.item():.5f},"
                      f"{npos},{sched.get_last_lr()[0]:.6g},{dt:.3f}\n")
            log.flush()
            if step % args.log_every == 0 or step == 1:
                print(f"ep {epoch} it {it + 1}/{iters_per_epoch} step {step}: loss {loss.item():.4f} "
                      f"(cls {lc.item():.4f} loc {ll.item():.4f} dir {ld.item():.4f}) pos {npos} "
                      f"gnorm {float(gn):.2f} lr {sched.get_last_lr()[0]:.2e} {dt:.2f}s/it", flush=True)
            last_in_epoch = it + 1 == iters_per_epoch
            if args.ckpt_every and step % args.ckpt_every == 0 and not last_in_epoch:
                save_ckpt(work / "ckpt_iter.pth", model, opt, sched, epoch, it + 1, step, args)
            if args.max_iters is not None and step >= args.max_iters:
                if last_in_epoch:
                    save_ckpt(work / f"ckpt_epoch_{epoch + 1}.pth", model, opt, sched, epoch + 1, 0, step, args)
                else:
                    save_ckpt(work / "ckpt_iter.pth", model, opt, sched, epoch, it + 1, step, args)
                done = True
                break
        if done:
            break
        skip = 0
        save_ckpt(work / f"ckpt_epoch_{epoch + 1}.pth", model, opt, sched, epoch + 1, 0, step, args)
        old = work / f"ckpt_epoch_{epoch + 1 - 5}.pth"  # keep the last 5 epoch checkpoints
        if old.exists():
            old.unlink()
    log.close()
    if args.export:
        if args.precise_bn:
            precise_bn(model, ds, bs, dev, args.precise_bn, args.seed)
        model.eval()
        export_safetensors(model, cfg, args.export, step)


if __name__ == "__main__":
    main()
