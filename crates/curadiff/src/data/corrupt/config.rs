//! The `[data.corrupt]` table of a run config: which corruption, of what strength, on which
//! share of the examples. Left out of config.toml at its default (off), so the configs of
//! runs made before it existed still match.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The corruption names `kind` accepts.
pub const KINDS: [&str; 4] = ["none", "blur", "jpeg", "motion"];

/// Corrupting a share of the examples at load time (see [`crate::data::corrupt`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorruptConfig {
    /// "none" (default: off), "blur" (Gaussian, `sigma`), "jpeg" (`quality`) or "motion"
    /// (motion blur, `length` and `angle`).
    #[serde(default = "none")]
    pub kind: String,
    /// The share of examples corrupted, in [0, 1] (default 1: all). Example id k is
    /// corrupted when u(k) < fraction, u(k) uniform in [0, 1) from (`seed`, k).
    #[serde(default = "one")]
    pub fraction: f64,
    /// blur: the Gaussian's standard deviation σ_B in pixels, > 0 (default 1; the reference's
    /// CIFAR runs use 0.4–1.0).
    #[serde(default = "one")]
    pub sigma: f64,
    /// jpeg: the quality q, 1..=100 (default 75; the reference uses 15–90).
    #[serde(default = "quality")]
    pub quality: i64,
    /// motion: the length of the blur line in pixels, > 0 (default 5).
    #[serde(default = "length")]
    pub length: f64,
    /// motion: the line's angle in degrees, counter-clockwise from the +x axis (default 0).
    #[serde(default)]
    pub angle: f64,
    /// motion: each corrupted example's angle is drawn uniformly from angle ± angle_spread
    /// degrees, from (`seed`, id) (default 0: every example at `angle`).
    #[serde(default)]
    pub angle_spread: f64,
    /// Seed of the choice of examples and of the random parts (the motion angles); a grid
    /// arm's run seed does not change them.
    #[serde(default)]
    pub seed: u64,
}

fn none() -> String {
    "none".into()
}
fn one() -> f64 {
    1.0
}
fn quality() -> i64 {
    75
}
fn length() -> f64 {
    5.0
}

impl Default for CorruptConfig {
    fn default() -> Self {
        Self {
            kind: none(),
            fraction: one(),
            sigma: one(),
            quality: quality(),
            length: length(),
            angle: 0.0,
            angle_spread: 0.0,
            seed: 0,
        }
    }
}

/// One example's corruption, with its strength resolved (the motion angle drawn).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Corruption {
    /// Gaussian blur of σ_B pixels.
    Blur { sigma: f64 },
    /// JPEG at quality q.
    Jpeg { quality: u8 },
    /// Motion blur along a line of `length` pixels at `angle` degrees.
    Motion { length: f64, angle: f64 },
}

impl Corruption {
    /// Its name, as `data.corrupt.kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Corruption::Blur { .. } => "blur",
            Corruption::Jpeg { .. } => "jpeg",
            Corruption::Motion { .. } => "motion",
        }
    }

    /// Its strength parameters as a JSON object (e.g. `{"sigma": 1.0}`).
    pub fn strength(&self) -> serde_json::Value {
        match *self {
            Corruption::Blur { sigma } => serde_json::json!({ "sigma": sigma }),
            Corruption::Jpeg { quality } => serde_json::json!({ "quality": quality }),
            Corruption::Motion { length, angle } => {
                serde_json::json!({ "length": length, "angle": angle })
            }
        }
    }
}

impl CorruptConfig {
    /// True at the defaults (off; left out of config.toml).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Whether any example is corrupted.
    pub fn is_on(&self) -> bool {
        self.kind != "none" && self.fraction > 0.0
    }

    /// Checks every field; errors name the key as `prefix` + field (`data.corrupt.` for the
    /// config, `--` for command-line flags, with `-` for `_`) and say what is allowed.
    pub fn validate(&self, prefix: &str) -> Result<()> {
        let key = |f: &str| {
            let f = if prefix == "--" {
                f.replace('_', "-")
            } else {
                f.to_string()
            };
            format!("{prefix}{f}")
        };
        let invalid = |f: &str, why: String| Error::InvalidValue { field: key(f), why };
        if !KINDS.contains(&self.kind.as_str()) {
            return Err(invalid(
                "kind",
                format!(
                    "'{}' is not a corruption; use one of {}",
                    self.kind,
                    KINDS.join(", ")
                ),
            ));
        }
        if !(self.fraction.is_finite() && (0.0..=1.0).contains(&self.fraction)) {
            return Err(invalid(
                "fraction",
                format!(
                    "must be in [0, 1] (the share of examples corrupted), got {}",
                    self.fraction
                ),
            ));
        }
        let positive = |f: &str, v: f64, what: &str| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(invalid(
                    f,
                    format!("must be a finite number > 0 ({what}), got {v}"),
                ))
            }
        };
        let finite = |f: &str, v: f64, what: &str| {
            if v.is_finite() {
                Ok(())
            } else {
                Err(invalid(f, format!("must be finite ({what}), got {v}")))
            }
        };
        positive("sigma", self.sigma, "the blur's σ_B in pixels, e.g. 1")?;
        if !(1..=100).contains(&self.quality) {
            return Err(invalid(
                "quality",
                format!(
                    "must be a whole number in 1..=100 (the JPEG quality; 100 is the best), \
                     got {}",
                    self.quality
                ),
            ));
        }
        positive("length", self.length, "the motion line in pixels, e.g. 5")?;
        finite("angle", self.angle, "degrees")?;
        finite("angle_spread", self.angle_spread, "degrees")?;
        if self.angle_spread < 0.0 {
            return Err(invalid(
                "angle_spread",
                format!("must be ≥ 0 degrees, got {}", self.angle_spread),
            ));
        }
        Ok(())
    }

    /// The corruption of an example whose angle draw is `u` (uniform in [0, 1)); None when
    /// `kind` is "none".
    pub fn corruption(&self, u: f64) -> Option<Corruption> {
        match self.kind.as_str() {
            "blur" => Some(Corruption::Blur { sigma: self.sigma }),
            "jpeg" => Some(Corruption::Jpeg {
                quality: self.quality.clamp(1, 100) as u8,
            }),
            "motion" => Some(Corruption::Motion {
                length: self.length,
                angle: self.angle + self.angle_spread * (2.0 * u - 1.0),
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_name_the_key_and_the_fix() {
        let ok = CorruptConfig {
            kind: "blur".into(),
            ..Default::default()
        };
        assert!(ok.validate("data.corrupt.").is_ok());
        let cases: [(CorruptConfig, &str, &str); 7] = [
            (
                CorruptConfig {
                    kind: "gauss".into(),
                    ..ok.clone()
                },
                "data.corrupt.kind",
                "blur, jpeg, motion",
            ),
            (
                CorruptConfig {
                    fraction: 1.5,
                    ..ok.clone()
                },
                "data.corrupt.fraction",
                "[0, 1]",
            ),
            (
                CorruptConfig {
                    fraction: -0.1,
                    ..ok.clone()
                },
                "data.corrupt.fraction",
                "[0, 1]",
            ),
            (
                CorruptConfig {
                    quality: 0,
                    ..ok.clone()
                },
                "data.corrupt.quality",
                "1..=100",
            ),
            (
                CorruptConfig {
                    quality: 101,
                    ..ok.clone()
                },
                "data.corrupt.quality",
                "1..=100",
            ),
            (
                CorruptConfig {
                    sigma: f64::NAN,
                    ..ok.clone()
                },
                "data.corrupt.sigma",
                "> 0",
            ),
            (
                CorruptConfig {
                    length: f64::INFINITY,
                    ..ok.clone()
                },
                "data.corrupt.length",
                "> 0",
            ),
        ];
        for (c, key, fix) in cases {
            let e = c.validate("data.corrupt.").unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(fix), "{e}");
        }
        let e = CorruptConfig {
            angle_spread: -1.0,
            ..ok
        }
        .validate("--")
        .unwrap_err()
        .to_string();
        assert!(e.contains("--angle-spread"), "{e}");
    }
}
