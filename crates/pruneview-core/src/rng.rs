//! The one seeded PRNG of the crate, its tests and benchmarks (SplitMix64), and stateless
//! hashing, so every synthetic scene, ray noise, distillation batch and test input is
//! reproducible from a seed, whatever the thread schedule.

/// SplitMix64 finaliser: a good 64-bit mixing function.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform in [0, 1) from a 64-bit hash.
pub fn unit(h: u64) -> f32 {
    (h >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
}

/// Standard normal from two hashes (Box-Muller).
pub fn normal_from(h1: u64, h2: u64) -> f32 {
    let u1 = unit(h1).max(1e-7);
    let u2 = unit(h2);
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

/// A sequential SplitMix64 generator.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng {
            state: mix64(seed ^ 0x05EE_D0F5_CE7E),
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.state)
    }

    /// Uniform in [0, 1).
    pub fn f(&mut self) -> f32 {
        unit(self.next_u64())
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.f()
    }

    /// `n` values uniform in [lo, hi) (test inputs, benchmark data).
    pub fn values(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.range(lo, hi)).collect()
    }

    /// Normal with mean `mu` and deviation `sigma`, clamped to mu +- 3 sigma.
    pub fn normal(&mut self, mu: f32, sigma: f32) -> f32 {
        let (a, b) = (self.next_u64(), self.next_u64());
        mu + sigma * normal_from(a, b).clamp(-3.0, 3.0)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f32) -> bool {
        self.f() < p
    }

    /// Uniform integer in [lo, hi] (inclusive).
    pub fn int(&mut self, lo: i64, hi: i64) -> i64 {
        let span = (hi - lo + 1).max(1) as u64;
        lo + (self.next_u64() % span) as i64
    }
}
