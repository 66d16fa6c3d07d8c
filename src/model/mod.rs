//! The model: its OpenPCDet config, its weights and its prunable-layer table.
