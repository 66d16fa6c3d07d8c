//! Benchmarks of the CPU kernels on the KITTI PointPillars layer shapes
//! (research/openpcdet-notes.md section 3: 68.3 GFLOPs of convolutions per scan).
//!
//! `cargo bench --bench nn` runs criterion on each representative shape (throughput is given
//! in FLOPs, so criterion's "elem/s" reads as FLOP/s), then prints a model summary: every
//! layer of the backbone, deblocks and head with the algorithm the dispatcher picks, its median
//! time and effective GFLOP/s (dense FLOPs / time), the alternatives for 3x3 convs, and the
//! total conv time of one scan. `cargo bench --bench nn -- --summary` prints only the summary.
//! Effective GFLOP/s can exceed the machine's FMA peak for Winograd (it does 4x fewer
//! multiplies than it is credited with).

// Benchmark code: a failed unwrap stops the benchmark (the workspace warns of them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use pruneview::nn::{Conv2d, Conv2dParams, ConvAlgo, ConvTranspose2d, Tensor, linear_into};

#[derive(Clone, Copy)]
enum Kind {
    Conv,
    ConvT,
}

/// One layer of the model: name, kind, Cin, Cout, input H, W, kernel, stride, padding,
/// bias, ReLU, how many times it occurs.
#[derive(Clone, Copy)]
struct Layer {
    name: &'static str,
    kind: Kind,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    p: usize,
    bias: bool,
    relu: bool,
    count: usize,
}

#[allow(clippy::too_many_arguments)]
const fn conv(
    name: &'static str,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    count: usize,
) -> Layer {
    Layer {
        name,
        kind: Kind::Conv,
        cin,
        cout,
        h,
        w,
        k,
        s,
        p: k / 2,
        bias: k == 1,
        relu: k == 3,
        count,
    }
}

const fn convt(name: &'static str, cin: usize, cout: usize, h: usize, w: usize, k: usize) -> Layer {
    Layer {
        name,
        kind: Kind::ConvT,
        cin,
        cout,
        h,
        w,
        k,
        s: k,
        p: 0,
        bias: true, // BatchNorm folded in
        relu: true,
        count: 1,
    }
}

/// KITTI PointPillars: BEV backbone (BN folded, ReLU fused), deblocks, anchor head.
const MODEL: &[Layer] = &[
    conv("blocks.0.1  64->64 s2 496x432", 64, 64, 496, 432, 3, 2, 1),
    conv("blocks.0.4+ 64->64 248x216", 64, 64, 248, 216, 3, 1, 3),
    conv("blocks.1.1  64->128 s2", 64, 128, 248, 216, 3, 2, 1),
    conv("blocks.1.4+ 128->128 124x108", 128, 128, 124, 108, 3, 1, 5),
    conv("blocks.2.1  128->256 s2", 128, 256, 124, 108, 3, 2, 1),
    conv("blocks.2.4+ 256->256 62x54", 256, 256, 62, 54, 3, 1, 5),
    convt("deblocks.0 T 64->128 k1", 64, 128, 248, 216, 1),
    convt("deblocks.1 T 128->128 k2s2", 128, 128, 124, 108, 2),
    convt("deblocks.2 T 256->128 k4s4", 256, 128, 62, 54, 4),
    conv("conv_cls 1x1 384->18", 384, 18, 248, 216, 1, 1, 1),
    conv("conv_box 1x1 384->42", 384, 42, 248, 216, 1, 1, 1),
    conv("conv_dir 1x1 384->12", 384, 12, 248, 216, 1, 1, 1),
];

/// The three head convs as one 384->72 conv (weights concatenated on Cout): reads the
/// 82 MB input once instead of three times.
const FUSED_HEAD: Layer = conv("head fused 1x1 384->72", 384, 72, 248, 216, 1, 1, 1);

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

impl Layer {
    fn out_hw(&self) -> (usize, usize) {
        match self.kind {
            Kind::Conv => (
                (self.h + 2 * self.p - self.k) / self.s + 1,
                (self.w + 2 * self.p - self.k) / self.s + 1,
            ),
            Kind::ConvT => (
                (self.h - 1) * self.s + self.k,
                (self.w - 1) * self.s + self.k,
            ),
        }
    }

    fn flops(&self) -> f64 {
        let (ho, wo) = self.out_hw();
        let pix = match self.kind {
            Kind::Conv => ho * wo,
            Kind::ConvT => self.h * self.w,
        };
        2.0 * (self.cin * self.cout * self.k * self.k * pix) as f64
    }

    /// A runnable instance: input, output buffer and the prepared layer.
    fn build(&self, algo: ConvAlgo) -> Option<Runner> {
        let x = Tensor::from_vec(
            &[self.cin, self.h, self.w],
            data(self.cin * self.h * self.w, 1),
        );
        let nw = self.cin * self.cout * self.k * self.k;
        let bias = data(self.cout, 3);
        let bias = self.bias.then_some(&bias[..]);
        let params = Conv2dParams::new(self.s, self.p).with_relu(self.relu);
        let op = match self.kind {
            Kind::Conv => {
                let wt = Tensor::from_vec(&[self.cout, self.cin, self.k, self.k], data(nw, 2));
                Op::Conv(Conv2d::with_algo(&wt, bias, params, algo).ok()?)
            }
            Kind::ConvT => {
                let wt = Tensor::from_vec(&[self.cin, self.cout, self.k, self.k], data(nw, 2));
                Op::ConvT(ConvTranspose2d::new(&wt, bias, params).ok()?)
            }
        };
        Some(Runner {
            x,
            out: Tensor::default(),
            op,
        })
    }
}

enum Op {
    Conv(Conv2d),
    ConvT(ConvTranspose2d),
}

struct Runner {
    x: Tensor,
    out: Tensor,
    op: Op,
}

impl Runner {
    fn run(&mut self) {
        let r = match &self.op {
            Op::Conv(c) => c.forward_into(&self.x, &mut self.out),
            Op::ConvT(c) => c.forward_into(&self.x, &mut self.out),
        };
        r.expect("benchmark shapes are valid");
        black_box(&self.out);
    }

    fn algo(&self) -> String {
        match &self.op {
            Op::Conv(c) => format!("{:?}", c.algo()),
            Op::ConvT(_) => "GEMM+shuffle".into(),
        }
    }
}

/// Median seconds of `reps` runs after one warm-up run.
fn median_time(r: &mut Runner, reps: usize) -> f64 {
    r.run();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            r.run();
            t0.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn criterion_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("nn");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for l in MODEL.iter().chain([&FUSED_HEAD]) {
        let Some(mut r) = l.build(ConvAlgo::Auto) else {
            continue;
        };
        g.throughput(Throughput::Elements(l.flops() as u64));
        g.bench_function(l.name, |b| b.iter(|| r.run()));
    }
    // PFN linear of PointPillars at 12k pillars: [12000, 32, 10] x [64, 10]^T, into a reused
    // output (a fresh 98 MB output costs ~60 ms of page faults on the reference VM).
    let x = Tensor::from_vec(&[12000, 32, 10], data(12000 * 320, 4));
    let w = Tensor::from_vec(&[64, 10], data(640, 5));
    let mut y = Tensor::default();
    g.throughput(Throughput::Elements(2 * 12000 * 32 * 640));
    g.bench_function("pfn linear 12000x32x10 -> 64", |b| {
        b.iter(|| {
            linear_into(&x, &w, None, &mut y).expect("valid shapes");
            black_box(&y);
        })
    });
    g.finish();
}

fn summary() {
    println!(
        "\nModel summary: KITTI PointPillars convs, {} rayon threads",
        rayon::current_num_threads()
    );
    println!(
        "{:32} {:>3} {:>12} {:>9} {:>8} {:>9}   alternatives (GFLOP/s)",
        "layer", "n", "algorithm", "median ms", "GFLOP/s", "total ms"
    );
    let mut total_t = 0.0;
    let mut total_f = 0.0;
    for l in MODEL {
        let mut r = l.build(ConvAlgo::Auto).expect("valid layer");
        let t = median_time(&mut r, 9);
        let f = l.flops();
        let mut alts = String::new();
        if matches!(l.kind, Kind::Conv) {
            for a in [ConvAlgo::Winograd, ConvAlgo::Direct, ConvAlgo::Im2colGemm] {
                if format!("{a:?}") == r.algo() {
                    continue;
                }
                if let Some(mut ra) = l.build(a) {
                    let ta = median_time(&mut ra, 3);
                    alts += &format!("{a:?} {:.0}  ", f / ta / 1e9);
                }
            }
        }
        total_t += t * l.count as f64;
        total_f += f * l.count as f64;
        println!(
            "{:32} {:>3} {:>12} {:>9.2} {:>8.1} {:>9.2}   {alts}",
            l.name,
            l.count,
            r.algo(),
            t * 1e3,
            f / t / 1e9,
            t * 1e3 * l.count as f64
        );
    }
    println!(
        "TOTAL {:.1} GFLOP: {:.1} ms per scan = {:.1} GFLOP/s effective",
        total_f / 1e9,
        total_t * 1e3,
        total_f / total_t / 1e9
    );
    let heads: f64 = MODEL[MODEL.len() - 3..]
        .iter()
        .map(|l| median_time(&mut l.build(ConvAlgo::Auto).expect("valid"), 5))
        .sum();
    let fused = median_time(&mut FUSED_HEAD.build(ConvAlgo::Auto).expect("valid"), 9);
    println!(
        "head: three 1x1 convs {:.2} ms vs one fused 384->72 conv {:.2} ms ({:.1} GFLOP/s): total with fused head {:.1} ms",
        heads * 1e3,
        fused * 1e3,
        FUSED_HEAD.flops() / fused / 1e9,
        (total_t - heads + fused) * 1e3
    );
}

fn main() {
    let summary_only = std::env::args().any(|a| a == "--summary");
    if !summary_only {
        let mut c = Criterion::default().configure_from_args();
        criterion_benches(&mut c);
        c.final_summary();
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this binary without it and
    // should only check that it starts.
    if summary_only || std::env::args().any(|a| a == "--bench") {
        summary();
    }
}
