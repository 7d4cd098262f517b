//! Axis ticks people can read: round values on linear axes, the budget points themselves (or
//! powers of two) on log-2 axes where budgets double, and short labels (1024, 20k, 1.5M,
//! 0.025).

/// An axis over `[lo, hi]`: linear, or log 2 (values > 0; positions are log2 x).
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    pub log2: bool,
    /// Range in axis positions (log2 x on a log axis).
    pub lo: f64,
    pub hi: f64,
    /// Tick positions, in axis positions.
    pub ticks: Vec<f64>,
}

impl Axis {
    /// The axis position of a data value.
    pub fn pos(&self, v: f64) -> f64 {
        if self.log2 {
            v.log2()
        } else {
            v
        }
    }

    /// The label of a tick at axis position `p`.
    pub fn label(&self, p: f64) -> String {
        if self.log2 {
            fmt_tick(p.exp2())
        } else {
            fmt_tick(p)
        }
    }
}

/// True when `xs` (the distinct data x values) call for a log-2 axis: all positive and
/// spanning at least a factor 4 (two doublings).
pub fn wants_log2(xs: &[f64]) -> bool {
    let (lo, hi) = min_max(xs);
    !xs.is_empty() && lo > 0.0 && hi / lo >= 4.0 - 1e-9
}

/// The x axis of data values `xs`: log 2 when [`wants_log2`], with the data values as ticks
/// when there are at most 8 of them (budget points), else at most 8 powers of two; linear
/// otherwise.
pub fn x_axis(xs: &[f64]) -> Axis {
    if wants_log2(xs) {
        let (lo, hi) = min_max(xs);
        let (lo, hi) = (lo.log2(), hi.log2());
        let pad = 0.04 * (hi - lo);
        let mut distinct: Vec<f64> = xs.iter().map(|x| x.log2()).collect();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
        let ticks = if distinct.len() <= 8 {
            distinct
        } else {
            // Powers of two, thinned to at most 8 so their labels do not overlap.
            let (a, b) = (lo.ceil() as i64, hi.floor() as i64);
            let step = ((b - a + 1) as usize).div_ceil(8).max(1);
            (a..=b).step_by(step).map(|k| k as f64).collect()
        };
        Axis {
            log2: true,
            lo: lo - pad,
            hi: hi + pad,
            ticks,
        }
    } else {
        linear(xs, 0.0)
    }
}

/// A linear axis over the values `vs`, widened by `pad` (a fraction of the span) each side.
pub fn linear(vs: &[f64], pad: f64) -> Axis {
    let (mut lo, mut hi) = min_max(vs);
    if !(lo.is_finite() && hi.is_finite()) {
        (lo, hi) = (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        let d = if lo.abs() > 1e-12 {
            0.05 * lo.abs()
        } else {
            0.5
        };
        (lo, hi) = (lo - d, hi + d);
    }
    let span = hi - lo;
    let (lo, hi) = (lo - pad * span, hi + pad * span);
    Axis {
        log2: false,
        lo,
        hi,
        ticks: nice_ticks(lo, hi, 6),
    }
}

/// About `n` round tick values (steps of 1, 2 or 5 × 10^k) inside `[lo, hi]`.
pub fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let raw = (hi - lo) / n.max(1) as f64;
    if !(raw > 0.0 && raw.is_finite()) {
        return vec![lo];
    }
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    // Rounded to the step's decimals, so that 3 × 0.2 is 0.6 and not 0.6000000000000001.
    let scale = 10f64.powi((-step.log10().floor()).max(0.0) as i32);
    (first..=last)
        .map(|k| {
            let v = ((k as f64 * step) * scale).round() / scale;
            if v.abs() < step * 1e-9 {
                0.0
            } else {
                v
            }
        })
        .collect()
}

/// A short label: integers as they are up to 99,999, then k and M; others with up to three
/// significant digits; tiny or huge values in scientific notation.
pub fn fmt_tick(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        return "0".into();
    }
    if !(1e-4..1e9).contains(&a) {
        return format!("{v:.1e}");
    }
    if a >= 1e6 {
        return format!("{}M", trim(format!("{:.2}", v / 1e6)));
    }
    if a >= 1e5 {
        return format!("{}k", trim(format!("{:.1}", v / 1e3)));
    }
    if (v - v.round()).abs() < 1e-9 * a.max(1.0) {
        return format!("{}", v.round() as i64);
    }
    let digits = (3 - a.log10().floor() as i32 - 1).clamp(0, 6) as usize;
    trim(format!("{v:.digits$}"))
}

fn trim(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn min_max(vs: &[f64]) -> (f64, f64) {
    vs.iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubling_budgets_get_a_log2_axis_with_the_budgets_as_ticks() {
        let a = x_axis(&[5.0, 10.0, 20.0, 40.0]);
        assert!(a.log2);
        let labels: Vec<String> = a.ticks.iter().map(|&p| a.label(p)).collect();
        assert_eq!(labels, ["5", "10", "20", "40"]);
        assert!(a.lo < 5f64.log2() && a.hi > 40f64.log2());
        // Many points: powers of two.
        let xs: Vec<f64> = (0..20).map(|i| 1024.0 * 1.5f64.powi(i)).collect();
        let a = x_axis(&xs);
        assert!(a.ticks.iter().all(|t| t.fract() == 0.0), "{:?}", a.ticks);
        assert_eq!(a.label(10.0), "1024");
        // 2⁻⁸ … 2⁶ (15 powers): every second one, 8 ticks.
        let a = x_axis(&(0..24).map(|i| 0.002 * 1.58f64.powi(i)).collect::<Vec<_>>());
        assert_eq!(
            a.ticks,
            (-8..=6).step_by(2).map(|k| k as f64).collect::<Vec<_>>()
        );
        // A narrow positive range or negative values stay linear.
        assert!(!x_axis(&[10.0, 20.0, 30.0]).log2);
        assert!(!x_axis(&[-3.0, 1.0]).log2);
    }

    #[test]
    fn ticks_are_round_and_labels_short() {
        assert_eq!(nice_ticks(0.0, 1.0, 5), [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(nice_ticks(13.75, 31.25, 4), [15.0, 20.0, 25.0, 30.0]);
        assert_eq!(fmt_tick(0.6000000000000001), "0.6");
        assert_eq!(fmt_tick(20480.0), "20480");
        assert_eq!(fmt_tick(250_000.0), "250k");
        assert_eq!(fmt_tick(1_500_000.0), "1.5M");
        assert_eq!(fmt_tick(0.0125), "0.0125");
        assert_eq!(fmt_tick(-2.5), "-2.5");
        let a = linear(&[0.5, 0.5], 0.0);
        assert!(a.lo < 0.5 && a.hi > 0.5 && !a.ticks.is_empty());
    }
}
