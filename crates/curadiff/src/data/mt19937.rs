//! NumPy's legacy `RandomState` generator: MT19937 with `init_genrand` seeding, 53-bit
//! doubles, and the legacy polar Gaussian that caches its second value.
//!
//! Only the tree toy's construction uses it, so that the mixture components are
//! bit-compatible with the published construction (`np.random.RandomState(seed).randn()`).

const N: usize = 624;
const M: usize = 397;

/// MT19937 state plus NumPy's cached Gaussian.
#[derive(Debug, Clone)]
pub struct LegacyRandomState {
    key: [u32; N],
    pos: usize,
    gauss: Option<f64>,
}

impl LegacyRandomState {
    /// `np.random.RandomState(seed)` for an integer seed.
    pub fn new(seed: u32) -> Self {
        let mut key = [0u32; N];
        let mut s = seed;
        for (i, k) in key.iter_mut().enumerate() {
            *k = s;
            s = 1_812_433_253u32
                .wrapping_mul(s ^ (s >> 30))
                .wrapping_add(i as u32 + 1);
        }
        Self {
            key,
            pos: N,
            gauss: None,
        }
    }

    fn generate(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        const MATRIX_A: u32 = 0x9908_b0df;
        for i in 0..N {
            let y = (self.key[i] & UPPER) | (self.key[(i + 1) % N] & LOWER);
            let mut v = self.key[(i + M) % N] ^ (y >> 1);
            if y & 1 == 1 {
                v ^= MATRIX_A;
            }
            self.key[i] = v;
        }
        self.pos = 0;
    }

    /// `genrand_int32`.
    pub fn next_u32(&mut self) -> u32 {
        if self.pos >= N {
            self.generate();
        }
        let mut y = self.key[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// `random_sample()`: a double in [0, 1) from two 32-bit draws.
    pub fn next_f64(&mut self) -> f64 {
        let a = (self.next_u32() >> 5) as f64;
        let b = (self.next_u32() >> 6) as f64;
        (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
    }

    /// `randn()`: NumPy's legacy polar-method Gaussian.
    pub fn randn(&mut self) -> f64 {
        if let Some(g) = self.gauss.take() {
            return g;
        }
        loop {
            let x1 = 2.0 * self.next_f64() - 1.0;
            let x2 = 2.0 * self.next_f64() - 1.0;
            let r2 = x1 * x1 + x2 * x2;
            if r2 < 1.0 && r2 != 0.0 {
                let f = (-2.0 * r2.ln() / r2).sqrt();
                self.gauss = Some(f * x1);
                return f * x2;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_reference_mt19937_outputs() {
        // The MT19937 reference (mt19937ar.c) with init_genrand(5489) starts
        // 3499211612, 581869302, 3890346734, 3586334585, 545404204; the 10000th output is
        // 4123659995 (C++ std::mt19937 default-seeded).
        let mut r = LegacyRandomState::new(5489);
        let first: Vec<u32> = (0..5).map(|_| r.next_u32()).collect();
        assert_eq!(
            first,
            [3499211612, 581869302, 3890346734, 3586334585, 545404204]
        );
        let mut r = LegacyRandomState::new(5489);
        let mut last = 0;
        for _ in 0..10_000 {
            last = r.next_u32();
        }
        assert_eq!(last, 4123659995);
    }
}
