//! The checkpointed state of an adaptive noise schedule ([`super::infonoise::Binned`]): the
//! step count, the current window's per-bin sums and counts, the running m̂ with the bins it
//! measured, π and the gate's pivot. Floats are stored as their IEEE-754 bit patterns (JSON
//! numbers would round), so a resumed run draws bit-identical σ.

use serde::{Deserialize, Serialize};

/// The part of the sampler a checkpoint stores.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// Observations (training steps) so far.
    pub steps: u64,
    /// Per-bin sum and count of the current window's x0-errors.
    pub sum: Vec<f64>,
    pub cnt: Vec<u64>,
    /// Observations not binned in the current window (non-finite, or σ off the grid).
    pub skipped: u64,
    pub m_hat: Option<Vec<f64>>,
    /// Bins whose m̂ was measured (≥ `min_bin_count` errors in some window).
    pub observed: Vec<bool>,
    /// π as bin masses; None while the base prior is in use.
    pub mass: Option<Vec<f64>>,
    pub gate_c: Option<f64>,
}

/// `State` with every float as its bit pattern. A checkpoint from before `observed` existed
/// loads with every bin of m̂ counted as observed, which is how it was used then.
#[derive(Serialize, Deserialize)]
struct StateBits {
    steps: u64,
    sum: Vec<u64>,
    cnt: Vec<u64>,
    skipped: u64,
    m_hat: Option<Vec<u64>>,
    #[serde(default)]
    observed: Vec<bool>,
    mass: Option<Vec<u64>>,
    gate_c: Option<u64>,
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn floats(v: &[u64]) -> Vec<f64> {
    v.iter().map(|&x| f64::from_bits(x)).collect()
}

impl State {
    /// The state before the first step, for `k` bins.
    pub fn new(k: usize) -> Self {
        Self {
            steps: 0,
            sum: vec![0.0; k],
            cnt: vec![0; k],
            skipped: 0,
            m_hat: None,
            observed: vec![false; k],
            mass: None,
            gate_c: None,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let b = StateBits {
            steps: self.steps,
            sum: bits(&self.sum),
            cnt: self.cnt.clone(),
            skipped: self.skipped,
            m_hat: self.m_hat.as_deref().map(bits),
            observed: self.observed.clone(),
            mass: self.mass.as_deref().map(bits),
            gate_c: self.gate_c.map(f64::to_bits),
        };
        serde_json::to_value(b).unwrap_or(serde_json::Value::Null)
    }

    /// Reads what [`State::to_json`] wrote, for a grid of `k` bins.
    pub fn from_json(v: &serde_json::Value, k: usize) -> Result<Self, String> {
        let s: StateBits = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
        let observed = if s.observed.is_empty() {
            vec![s.m_hat.is_some(); s.sum.len()]
        } else {
            s.observed
        };
        let st = Self {
            steps: s.steps,
            sum: floats(&s.sum),
            cnt: s.cnt,
            skipped: s.skipped,
            m_hat: s.m_hat.as_deref().map(floats),
            observed,
            mass: s.mass.as_deref().map(floats),
            gate_c: s.gate_c.map(f64::from_bits),
        };
        let ok = |v: &Option<Vec<f64>>| v.as_ref().is_none_or(|v| v.len() == k);
        if st.sum.len() != k
            || st.cnt.len() != k
            || st.observed.len() != k
            || !ok(&st.m_hat)
            || !ok(&st.mass)
        {
            return Err(format!("the noise sampler state does not have {k} bins"));
        }
        Ok(st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_bit_for_bit_and_old_ones_still_load() {
        let mut s = State::new(3);
        s.steps = 7;
        s.sum = vec![0.1, 1.0 / 3.0, 0.0];
        s.cnt = vec![1, 2, 0];
        s.m_hat = Some(vec![0.3, f64::MIN_POSITIVE, 2.0]);
        s.observed = vec![true, true, false];
        s.mass = Some(vec![0.2, 0.3, 0.5]);
        s.gate_c = Some(0.123_456_789_012_345_67);
        let text = serde_json::to_string(&s.to_json()).unwrap();
        let v = serde_json::from_str(&text).unwrap();
        assert_eq!(State::from_json(&v, 3).unwrap(), s);
        assert!(State::from_json(&v, 4).unwrap_err().contains("4 bins"));
        // Without `observed` (a checkpoint from before it): every bin of an existing m̂ counts
        // as observed; with no m̂ yet, none.
        let mut old = s.to_json();
        old.as_object_mut().unwrap().remove("observed");
        assert_eq!(State::from_json(&old, 3).unwrap().observed, vec![true; 3]);
        let mut fresh = State::new(3).to_json();
        fresh.as_object_mut().unwrap().remove("observed");
        assert_eq!(
            State::from_json(&fresh, 3).unwrap().observed,
            vec![false; 3]
        );
    }
}
