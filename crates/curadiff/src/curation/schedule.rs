//! When selection is on: always, Early (on until the learner first beats the reference, then
//! off for good) or Late (off until then, on afterwards). The learner "beats" the reference
//! on a super-batch when its mean loss there is below the reference's.

use serde::{Deserialize, Serialize};

/// The selection schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Always,
    Early,
    Late,
}

/// The schedule's state: whether selection is on, and the step it switched (if it has).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Switch {
    pub schedule: Schedule,
    pub switched_at: Option<u64>,
}

impl Switch {
    pub fn new(schedule: Schedule) -> Self {
        Self {
            schedule,
            switched_at: None,
        }
    }

    /// Whether selection is on now.
    pub fn selecting(&self) -> bool {
        match self.schedule {
            Schedule::Always => true,
            Schedule::Early => self.switched_at.is_none(),
            Schedule::Late => self.switched_at.is_some(),
        }
    }

    /// Whether the reference must be scored this step to decide the switch.
    pub fn watching(&self) -> bool {
        self.schedule != Schedule::Always && self.switched_at.is_none()
    }

    /// Records this step's mean learner and reference losses; switches once, for good.
    pub fn observe(&mut self, step: u64, mean_learner: f64, mean_reference: f64) {
        if self.watching() && mean_learner < mean_reference {
            self.switched_at = Some(step);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_switches_off_exactly_once() {
        let mut s = Switch::new(Schedule::Early);
        let losses = [(0.9, 0.5), (0.6, 0.5), (0.4, 0.5), (0.7, 0.5), (0.3, 0.5)];
        let mut on = Vec::new();
        for (t, &(l, r)) in losses.iter().enumerate() {
            on.push(s.selecting());
            s.observe(t as u64, l, r);
        }
        assert_eq!(on, [true, true, true, false, false]);
        assert_eq!(s.switched_at, Some(2));
        assert!(!s.watching());
    }

    #[test]
    fn late_is_the_inverse_and_always_never_switches() {
        let mut s = Switch::new(Schedule::Late);
        assert!(!s.selecting());
        s.observe(0, 0.9, 0.5);
        assert!(!s.selecting());
        s.observe(1, 0.4, 0.5);
        assert!(s.selecting());
        s.observe(2, 0.9, 0.5);
        assert!(s.selecting() && s.switched_at == Some(1));
        let mut a = Switch::new(Schedule::Always);
        a.observe(0, 0.1, 0.5);
        assert!(a.selecting() && a.switched_at.is_none() && !a.watching());
    }
}
