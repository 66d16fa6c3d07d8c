//! The order in which a layer's weights are pruned, and the masks a sparsity gives.
//!
//! Sparsity `s` prunes the `floor(s * n)` lowest-ranked weights of a layer. Ranks are total
//! orders: equal scores are broken by the flat index (lower index pruned first), so the same
//! weights always give the same masks.

/// What orders weights inside a layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ranking {
    /// `|w|` (default).
    #[default]
    Magnitude,
    /// Second-order saliency `w^2 * diag(J^T J)`, the Gauss-Newton diagonal estimated from the
    /// same probes as the curves.
    Saliency,
}

impl Ranking {
    pub fn name(self) -> &'static str {
        match self {
            Ranking::Magnitude => "magnitude",
            Ranking::Saliency => "saliency",
        }
    }
}

impl std::str::FromStr for Ranking {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "magnitude" => Ok(Ranking::Magnitude),
            "saliency" => Ok(Ranking::Saliency),
            _ => Err(format!(
                "unknown ranking `{s}` (expected magnitude or saliency)"
            )),
        }
    }
}

/// How many of `n` weights sparsity `s` prunes: `floor(s * n)`, with a tiny tolerance so
/// that levels like 0.29 (0.29 * 100 = 28.999...) mean what they say.
pub fn pruned_count(sparsity: f64, n: usize) -> usize {
    let s = sparsity.clamp(0.0, 1.0);
    ((s * n as f64 + 1e-9).floor() as usize).min(n)
}

/// Indices of a layer's weights, lowest score first; ties by index.
pub fn order_by_score(scores: &[f32]) -> Vec<u32> {
    let mut idx: Vec<u32> = (0..scores.len() as u32).collect();
    idx.sort_unstable_by(|&a, &b| {
        scores[a as usize]
            .total_cmp(&scores[b as usize])
            .then(a.cmp(&b))
    });
    idx
}

/// Magnitude order of a layer's weights (`|w|` ascending, ties by index).
pub fn magnitude_order(weights: &[f32]) -> Vec<u32> {
    let scores: Vec<f32> = weights.iter().map(|w| w.abs()).collect();
    order_by_score(&scores)
}

/// Saliency order: `w^2 * h` ascending (`h` = Gauss-Newton diagonal), ties by index.
pub fn saliency_order(weights: &[f32], gn_diagonal: &[f32]) -> Vec<u32> {
    let scores: Vec<f32> = weights
        .iter()
        .zip(gn_diagonal)
        .map(|(w, h)| w * w * h)
        .collect();
    order_by_score(&scores)
}

/// The keep-mask (1 kept, 0 pruned) of a layer at `sparsity`, given its prune order.
pub fn mask(order: &[u32], sparsity: f64) -> Vec<u8> {
    let mut m = vec![1u8; order.len()];
    for &i in &order[..pruned_count(sparsity, order.len())] {
        m[i as usize] = 0;
    }
    m
}

/// A copy of `weights` with the first `pruned_count(sparsity)` weights of `order` zeroed.
pub fn prune(weights: &[f32], order: &[u32], sparsity: f64) -> Vec<f32> {
    let mut w = weights.to_vec();
    for &i in &order[..pruned_count(sparsity, order.len())] {
        w[i as usize] = 0.0;
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruned_count_floors_with_tolerance() {
        assert_eq!(pruned_count(0.29, 100), 29);
        assert_eq!(pruned_count(0.5, 3), 1);
        assert_eq!(pruned_count(1.0, 7), 7);
        assert_eq!(pruned_count(0.0, 7), 0);
        assert_eq!(pruned_count(-0.1, 7), 0);
        assert_eq!(pruned_count(1.5, 7), 7);
    }

    #[test]
    fn ties_break_by_index_and_masks_follow_order() {
        let w = [0.5, -0.1, 0.1, 2.0, -0.5];
        let o = magnitude_order(&w);
        assert_eq!(o, vec![1, 2, 0, 4, 3]);
        assert_eq!(mask(&o, 0.4), vec![1, 0, 0, 1, 1]);
        assert_eq!(prune(&w, &o, 0.6), vec![0.0, 0.0, 0.0, 2.0, -0.5]);
    }

    #[test]
    fn saliency_uses_curvature() {
        let w = [1.0, 1.0, 0.1];
        let h = [0.1, 10.0, 100.0];
        assert_eq!(saliency_order(&w, &h), vec![0, 2, 1]);
    }
}
