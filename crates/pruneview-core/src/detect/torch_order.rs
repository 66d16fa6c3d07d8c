//! PyTorch's CPU numerics, reproduced where OpenPCDet's boxes depend on them bit for bit:
//! the sigmoid that turns logits into scores, and the order `topk` / `sort` give equal scores.
//!
//! OpenPCDet picks candidates with `torch.topk` and orders them for NMS with `torch.sort`.
//! When scores tie exactly (common: every empty BEV cell yields the same logits), which of
//! the tied boxes survive NMS depends on the order these two put them in. On CPU both are
//! the C++ standard library's unstable algorithms (libstdc++ introsort / introselect /
//! heap select) over `(score, index)` pairs compared by score only, so we implement those
//! algorithms step for step: same comparisons, same swaps, same tie order.

/// `torch.sigmoid` on a CPU with AVX-512/AVX2 + FMA: `1 / (1 + exp(-x))` with SLEEF's
/// `expf_u10` (range reduction by ln 2 in two FMA steps, a degree-6 polynomial, scaling by
/// 2^q in two halves). Matching it to the last bit matters because equal scores are common
/// (every empty BEV cell) and a one-ulp difference changes which tied box survives NMS.
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp_u10(0.0 - x))
}

fn exp_u10(d: f32) -> f32 {
    const INV_LN2: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in a high part with trailing zero bits and the remainder (SLEEF's L2Uf/L2Lf).
    const LN2_HI: f32 = f32::from_bits(0x3f31_7200);
    const LN2_LO: f32 = f32::from_bits(0x35bf_be8e);
    const POLY: [f32; 6] = [
        0.000_198_527_62,
        0.001_393_043_6,
        0.008_333_361,
        0.041_666_485,
        0.166_666_67,
        0.5,
    ];
    let q = (d * INV_LN2).round_ties_even() as i32;
    let qf = q as f32;
    let s = qf.mul_add(-LN2_LO, qf.mul_add(-LN2_HI, d));
    let u = POLY[1..].iter().fold(POLY[0], |u, &c| u.mul_add(s, c));
    let u = 1.0 + (s * s).mul_add(u, s);
    let half = q >> 1;
    let pow2 = |e: i32| f32::from_bits(((e + 127).clamp(0, 255) as u32) << 23);
    let u = u * pow2(half) * pow2(q - half);
    if d < -104.0 {
        0.0
    } else if d > 100.0 {
        f32::INFINITY
    } else {
        u
    }
}

/// Orders `(score, index)` pairs descending, NaN first, like PyTorch's comparators.
fn before(a: &(f32, usize), b: &(f32, usize)) -> bool {
    (a.0.is_nan() && !b.0.is_nan()) || a.0 > b.0
}

type Elem = (f32, usize);

const THRESHOLD: usize = 16;

fn lg(n: usize) -> usize {
    (usize::BITS - 1 - n.leading_zeros()) as usize
}

fn move_median_to_first(v: &mut [Elem], result: usize, a: usize, b: usize, c: usize) {
    if before(&v[a], &v[b]) {
        if before(&v[b], &v[c]) {
            v.swap(result, b);
        } else if before(&v[a], &v[c]) {
            v.swap(result, c);
        } else {
            v.swap(result, a);
        }
    } else if before(&v[a], &v[c]) {
        v.swap(result, a);
    } else if before(&v[b], &v[c]) {
        v.swap(result, c);
    } else {
        v.swap(result, b);
    }
}

/// Hoare partition of `v[first..last]` around the pivot at `pivot` (outside the range).
fn unguarded_partition(v: &mut [Elem], mut first: usize, mut last: usize, pivot: usize) -> usize {
    loop {
        while before(&v[first], &v[pivot]) {
            first += 1;
        }
        last -= 1;
        while before(&v[pivot], &v[last]) {
            last -= 1;
        }
        if first >= last {
            return first;
        }
        v.swap(first, last);
        first += 1;
    }
}

fn partition_pivot(v: &mut [Elem], first: usize, last: usize) -> usize {
    let mid = first + (last - first) / 2;
    move_median_to_first(v, first, first + 1, mid, last - 1);
    unguarded_partition(v, first + 1, last, first)
}

fn unguarded_linear_insert(v: &mut [Elem], mut last: usize) {
    let val = v[last];
    let mut next = last - 1;
    while before(&val, &v[next]) {
        v[last] = v[next];
        last = next;
        next -= 1;
    }
    v[last] = val;
}

fn insertion_sort(v: &mut [Elem], first: usize, last: usize) {
    if first == last {
        return;
    }
    for i in first + 1..last {
        if before(&v[i], &v[first]) {
            let val = v[i];
            v.copy_within(first..i, first + 1);
            v[first] = val;
        } else {
            unguarded_linear_insert(v, i);
        }
    }
}

fn push_heap(v: &mut [Elem], first: usize, mut hole: usize, top: usize, val: Elem) {
    let mut parent = hole.wrapping_sub(1) / 2;
    while hole > top && before(&v[first + parent], &val) {
        v[first + hole] = v[first + parent];
        hole = parent;
        parent = hole.wrapping_sub(1) / 2;
    }
    v[first + hole] = val;
}

fn adjust_heap(v: &mut [Elem], first: usize, mut hole: usize, len: usize, val: Elem) {
    let top = hole;
    let mut child = hole;
    while child < len.saturating_sub(1) / 2 {
        child = 2 * (child + 1);
        if before(&v[first + child], &v[first + child - 1]) {
            child -= 1;
        }
        v[first + hole] = v[first + child];
        hole = child;
    }
    if len & 1 == 0 && len >= 2 && child == (len - 2) / 2 {
        child = 2 * (child + 1);
        v[first + hole] = v[first + child - 1];
        hole = child - 1;
    }
    push_heap(v, first, hole, top, val);
}

fn make_heap(v: &mut [Elem], first: usize, last: usize) {
    let len = last - first;
    if len < 2 {
        return;
    }
    let mut parent = (len - 2) / 2;
    loop {
        let val = v[first + parent];
        adjust_heap(v, first, parent, len, val);
        if parent == 0 {
            return;
        }
        parent -= 1;
    }
}

fn pop_heap(v: &mut [Elem], first: usize, last: usize, result: usize) {
    let val = v[result];
    v[result] = v[first];
    adjust_heap(v, first, 0, last - first, val);
}

fn heap_select(v: &mut [Elem], first: usize, middle: usize, last: usize) {
    make_heap(v, first, middle);
    for i in middle..last {
        if before(&v[i], &v[first]) {
            pop_heap(v, first, middle, i);
        }
    }
}

fn sort_heap(v: &mut [Elem], first: usize, mut last: usize) {
    while last - first > 1 {
        last -= 1;
        pop_heap(v, first, last, last);
    }
}

fn partial_sort(v: &mut [Elem], first: usize, middle: usize, last: usize) {
    heap_select(v, first, middle, last);
    sort_heap(v, first, middle);
}

fn introsort_loop(v: &mut [Elem], first: usize, mut last: usize, mut depth: usize) {
    while last - first > THRESHOLD {
        if depth == 0 {
            partial_sort(v, first, last, last);
            return;
        }
        depth -= 1;
        let cut = partition_pivot(v, first, last);
        introsort_loop(v, cut, last, depth);
        last = cut;
    }
}

/// `std::sort`.
fn std_sort(v: &mut [Elem], first: usize, last: usize) {
    if last - first < 2 {
        return;
    }
    introsort_loop(v, first, last, lg(last - first) * 2);
    if last - first > THRESHOLD {
        insertion_sort(v, first, first + THRESHOLD);
        for i in first + THRESHOLD..last {
            unguarded_linear_insert(v, i);
        }
    } else {
        insertion_sort(v, first, last);
    }
}

/// `std::nth_element`.
fn nth_element(v: &mut [Elem], mut first: usize, nth: usize, mut last: usize) {
    if first == last || nth == last {
        return;
    }
    let mut depth = lg(last - first) * 2;
    while last - first > 3 {
        if depth == 0 {
            heap_select(v, first, nth + 1, last);
            v.swap(first, nth);
            return;
        }
        depth -= 1;
        let cut = partition_pivot(v, first, last);
        if cut <= nth {
            first = cut;
        } else {
            last = cut;
        }
    }
    insertion_sort(v, first, last);
}

/// Indices of the `k` largest `scores`, in the order `torch.topk(scores, k)` returns them
/// on CPU (sorted descending; ties as PyTorch leaves them).
pub fn topk(scores: &[f32], k: usize) -> Vec<usize> {
    let n = scores.len();
    let k = k.min(n);
    if k == 0 {
        return Vec::new();
    }
    let mut q: Vec<Elem> = scores.iter().copied().zip(0..n).collect();
    if k * 64 <= n {
        partial_sort(&mut q, 0, k, n);
    } else {
        nth_element(&mut q, 0, k - 1, n);
        std_sort(&mut q, 0, k - 1);
    }
    q[..k].iter().map(|e| e.1).collect()
}

/// Indices that `torch.sort(scores, descending=True)` returns on CPU.
pub fn sort_descending(scores: &[f32]) -> Vec<usize> {
    let mut q: Vec<Elem> = scores.iter().copied().zip(0..scores.len()).collect();
    let n = q.len();
    std_sort(&mut q, 0, n);
    q.into_iter().map(|e| e.1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_desc(scores: &[f32], idx: &[usize]) -> bool {
        idx.windows(2).all(|w| scores[w[0]] >= scores[w[1]])
    }

    #[test]
    fn sorts_and_selects_like_a_sort() {
        // A deterministic pseudo-random sequence with many ties.
        let mut x = 12345u64;
        let scores: Vec<f32> = (0..5000)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 40) % 50) as f32 / 7.0
            })
            .collect();
        let s = sort_descending(&scores);
        assert!(is_desc(&scores, &s));
        let mut seen = s.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..5000).collect::<Vec<_>>());
        for k in [1, 10, 78, 79, 500, 4999, 5000] {
            let t = topk(&scores, k);
            assert_eq!(t.len(), k);
            assert!(is_desc(&scores, &t), "k={k}");
            let kth = scores[s[k - 1]];
            assert!(t.iter().all(|&i| scores[i] >= kth));
        }
    }
}
