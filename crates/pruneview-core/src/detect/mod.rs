//! Detector stages: VFE, scatter, BEV backbone, heads, box coding, rotated IoU, NMS.
//!
//! A [`Detector`] is an OpenPCDet config plus weights plus these stages. It knows nothing of
//! pruning: the pruning core swaps unit weights through [`layers::Unit::set_weight`].

pub mod anchors;
pub mod backbone;
pub mod box_coder;
pub mod detector;
pub mod heads;
pub mod input;
pub mod layers;
pub mod nms;
pub mod sparse_backbone;
pub mod sweep;
pub mod torch_order;
pub mod vfe;

pub use detector::{
    Detector, DetectorError, Encoder, ForwardOutput, ScanCost, SparseOutput, StageTimes,
    TapedForward,
};
pub use heads::{Detection, OutputKind, OutputLayout, OutputRole, RawOutput, RawOutputs};
pub use input::{FovFilter, PreparedScan, prepare_scan};
pub use layers::UnitGrads;
pub use sweep::Sweep;
