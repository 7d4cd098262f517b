//! A grid of bins uniform in log σ over [σ_min, σ_max], and what the adaptive noise
//! schedules tabulate on it: per-bin profiles (filled where unmeasured, smoothed across bins)
//! and distributions as bin masses with a CDF at the edges, sampled by inverse CDF linear in
//! log σ inside a bin (InfoNoise's Eq. 16).

/// K bins uniform in ln σ.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogGrid {
    sigma_min: f64,
    sigma_max: f64,
    log_min: f64,
    width: f64,
    bins: usize,
}

impl LogGrid {
    pub fn new(sigma_min: f64, sigma_max: f64, bins: usize) -> Self {
        Self {
            sigma_min,
            sigma_max,
            log_min: sigma_min.ln(),
            width: (sigma_max.ln() - sigma_min.ln()) / bins as f64,
            bins,
        }
    }

    pub fn bins(&self) -> usize {
        self.bins
    }

    /// ln σ at bin edge `i` (0..=K).
    pub fn edge(&self, i: usize) -> f64 {
        self.log_min + i as f64 * self.width
    }

    /// σ at fraction `frac` ∈ [0, 1] of bin `i` in ln σ.
    pub fn at(&self, i: usize, frac: f64) -> f64 {
        (self.edge(i) + frac * self.width).exp()
    }

    /// The bin centres σ_k (geometric midpoints).
    pub fn centers(&self) -> Vec<f64> {
        (0..self.bins).map(|i| self.at(i, 0.5)).collect()
    }

    /// The bin holding σ (None off the grid or not finite).
    pub fn bin_of(&self, sigma: f64) -> Option<usize> {
        if !(sigma >= self.sigma_min && sigma <= self.sigma_max) {
            return None;
        }
        let i = ((sigma.ln() - self.log_min) / self.width).floor();
        Some((i.max(0.0) as usize).min(self.bins - 1))
    }

    /// The bins `lo..hi` meeting ln σ ∈ [a, b] (empty when the range misses the grid).
    pub fn bins_between(&self, a: f64, b: f64) -> (usize, usize) {
        let k = self.bins as f64;
        let pos = |l: f64| ((l - self.log_min) / self.width).clamp(0.0, k);
        (pos(a).floor() as usize, pos(b).ceil() as usize)
    }

    /// σ at CDF value ξ of bin masses whose CDF at the edges is `cdf` (K+1 values):
    /// linear in ln σ inside the bin; `flat` is the fraction used inside a bin of no mass.
    pub fn inverse_cdf(&self, cdf: &[f64], xi: f64, flat: f64) -> f64 {
        // The last edge with CDF ≤ ξ starts a bin of positive mass.
        let i = cdf.partition_point(|&c| c <= xi).clamp(1, self.bins) - 1;
        let width = cdf[i + 1] - cdf[i];
        let frac = if width > 0.0 {
            ((xi - cdf[i]) / width).clamp(0.0, 1.0)
        } else {
            flat
        };
        self.at(i, frac)
    }
}

/// `v / Σv`, or None when the sum is not a positive finite number or an entry is negative.
pub fn normalised(v: &[f64]) -> Option<Vec<f64>> {
    let s: f64 = v.iter().sum();
    (s.is_finite() && s > 0.0 && v.iter().all(|x| x.is_finite() && *x >= 0.0))
        .then(|| v.iter().map(|x| x / s).collect())
}

/// CDF at the K+1 edges of bin masses summing to 1 (the last edge is exactly 1).
pub fn cdf_of(mass: &[f64]) -> Vec<f64> {
    let mut c = Vec::with_capacity(mass.len() + 1);
    let mut acc = 0.0;
    c.push(0.0);
    for m in mass {
        acc += m;
        c.push(acc.min(1.0));
    }
    if let Some(last) = c.last_mut() {
        *last = 1.0;
    }
    c
}

/// Fills missing bins linearly between measured neighbours; beyond the ends, the nearest.
pub fn interpolate(raw: &[Option<f64>]) -> Vec<f64> {
    let known: Vec<(usize, f64)> = raw
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| (i, v)))
        .collect();
    (0..raw.len())
        .map(|i| {
            let right = known.partition_point(|&(j, _)| j < i);
            match (right.checked_sub(1).map(|l| known[l]), known.get(right)) {
                (_, Some(&(j, v))) if j == i => v,
                (Some((a, va)), Some(&(b, vb))) => va + (vb - va) * (i - a) as f64 / (b - a) as f64,
                (Some((_, v)), None) | (None, Some(&(_, v))) => v,
                (None, None) => 0.0,
            }
        })
        .collect()
}

/// Gaussian smoothing across bins with standard deviation `s` bins, renormalised over the
/// bins used: a measured bin (`measured[i]`) averages measured bins only, so a filled value
/// never leaks into it; a filled bin averages all of them.
pub fn smooth(v: &[f64], s: f64, measured: &[bool]) -> Vec<f64> {
    if s <= 0.0 {
        return v.to_vec();
    }
    let r = (3.0 * s).ceil() as i64;
    let n = v.len() as i64;
    (0..n)
        .map(|i| {
            let own = measured[i as usize];
            let (mut acc, mut wsum) = (0.0, 0.0);
            for j in (i - r).max(0)..=(i + r).min(n - 1) {
                if own && !measured[j as usize] {
                    continue;
                }
                let d = (j - i) as f64 / s;
                let w = (-0.5 * d * d).exp();
                acc += w * v[j as usize];
                wsum += w;
            }
            acc / wsum
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_and_smoothing_by_hand() {
        let v = interpolate(&[None, Some(1.0), None, None, Some(4.0), None]);
        assert_eq!(v, vec![1.0, 1.0, 2.0, 3.0, 4.0, 4.0]);
        // Smoothing keeps a linear ramp inside (symmetric kernel) and constants everywhere.
        let all = [true; 20];
        let ramp: Vec<f64> = (0..20).map(|i| i as f64).collect();
        let s = smooth(&ramp, 1.5, &all);
        assert!((s[10] - 10.0).abs() < 1e-12);
        assert!(smooth(&[3.0; 9], 2.0, &[true; 9])
            .iter()
            .all(|x| (x - 3.0).abs() < 1e-12));
        // A filled bin never leaks into a measured one: measured bins 2..5 of value 1
        // beside filled bins of 100 stay exactly 1; the filled bins average everything.
        let v = [100.0, 100.0, 1.0, 1.0, 1.0, 100.0];
        let m = [false, false, true, true, true, false];
        let s = smooth(&v, 1.0, &m);
        assert_eq!(&s[2..5], &[1.0, 1.0, 1.0]);
        assert!(s[0] > 1.0 && s[0] < 100.0);
    }

    #[test]
    fn the_grid_by_hand() {
        // [1, 16] in 4 bins: edges at 1, 2, 4, 8, 16.
        let g = LogGrid::new(1.0, 16.0, 4);
        assert!((g.at(2, 0.0) - 4.0).abs() < 1e-12);
        assert!((g.centers()[0] - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(g.bin_of(3.0), Some(1));
        assert_eq!(g.bin_of(16.0), Some(3));
        assert_eq!((g.bin_of(0.5), g.bin_of(f64::NAN)), (None, None));
        // ln σ ∈ [ln 3, ln 5]: bins 1 (2..4) and 2 (4..8); a range off the grid is empty.
        assert_eq!(g.bins_between(3f64.ln(), 5f64.ln()), (1, 3));
        assert_eq!(g.bins_between(-9.0, -8.0), (0, 0));
        // Masses [0.5, 0, 0.25, 0.25]: ξ = 0.25 is halfway through bin 0 (σ = √2); the
        // empty bin 1 is skipped; ξ = 0.625 is halfway through bin 2 (σ = 4√2).
        let cdf = cdf_of(&[0.5, 0.0, 0.25, 0.25]);
        assert!((g.inverse_cdf(&cdf, 0.25, 0.5) - 2f64.sqrt()).abs() < 1e-12);
        assert!((g.inverse_cdf(&cdf, 0.625, 0.5) - 4.0 * 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(normalised(&[1.0, -1.0, 2.0]), None);
    }
}
