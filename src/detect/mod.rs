//! Detector stages: VFE, scatter, BEV backbone, heads, box coding, rotated IoU, NMS.
