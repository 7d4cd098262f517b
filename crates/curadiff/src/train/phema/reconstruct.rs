//! Reconstruction of the EMA at any σ_rel and time from a run's post-hoc EMA snapshots:
//! the least-squares coefficients of the stored profiles ([`super::profile::Solver`]) applied
//! to the stored weights (EDM2 Algorithm 3). A target the snapshots cannot represent (relative
//! L2 residual of the profile fit above [`TOLERANCE`]) is refused with the range they can.

use std::path::Path;

use super::profile::{Fit, PowerProfile, Solver};
use super::snapshot::{self, SnapshotInfo};
use crate::error::{Error, Result};
use crate::models::params::HostParam;
use crate::train::ema::gamma_from_sigma_rel;
use crate::train::run::RunDir;

/// The largest relative L2 residual ‖p_target − Σ xᵢ pᵢ‖ / ‖p_target‖ of the profile fit
/// that is accepted as a reconstruction.
pub const TOLERANCE: f64 = 0.05;

/// What to reconstruct.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// σ_rel of the EMA profile, in (0, 0.28).
    pub sigma_rel: f64,
    /// Its time in images; `None`: the last snapshot's.
    pub nimg: Option<u64>,
    /// The stored σ_rels to combine; empty: all of them.
    pub from: Vec<f64>,
}

impl Target {
    /// The EMA at `sigma_rel` at the last snapshot, from every stored profile.
    pub fn at(sigma_rel: f64) -> Self {
        Self {
            sigma_rel,
            nimg: None,
            from: Vec::new(),
        }
    }
}

/// One stored profile's share of a reconstruction.
#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    pub nimg: u64,
    pub sigma_rel: f64,
    pub coefficient: f64,
}

/// Reconstructed EMA weights and how they were made.
#[derive(Debug, Clone)]
pub struct Reconstruction {
    pub sigma_rel: f64,
    pub nimg: u64,
    pub terms: Vec<Term>,
    /// Σ xᵢ of the least-squares solution before scaling to 1.
    pub mass: f64,
    /// Relative L2 residual of the profile fit.
    pub residual: f64,
    pub params: Vec<HostParam>,
}

/// The snapshot profiles used for `target`: (snapshot, profile index in it, profile).
type Source = (usize, usize, PowerProfile);

/// How `target` is made from a run's snapshots.
struct Plan {
    snaps: Vec<SnapshotInfo>,
    sources: Vec<Source>,
    nimg: u64,
    fit: Fit,
}

/// Checks that `target` can be reconstructed from `run`'s snapshots (no weights read): its
/// time in images and the relative L2 residual of the profile fit.
pub fn check(run: &Path, target: &Target) -> Result<(u64, f64)> {
    let p = plan(run, target)?;
    Ok((p.nimg, p.fit.residual))
}

/// The coefficients of `target` over the snapshots of `run` (no weights read).
fn plan(run: &Path, target: &Target) -> Result<Plan> {
    let cfg = RunDir::new(run).read_run_config()?;
    if !cfg.data.is_images() {
        return Err(Error::Config(format!(
            "{} is a toy run; post-hoc EMA is kept for image runs",
            run.display()
        )));
    }
    let s = target.sigma_rel;
    if !(s.is_finite() && s > 0.0 && s < 0.28) {
        return Err(Error::InvalidValue {
            field: "sigma_rel".into(),
            why: format!("{s} is not a power-function EMA width: σ_rel must be in (0, 0.28)"),
        });
    }
    let snaps = snapshot::list(run)?;
    let (Some(first), Some(last)) = (snaps.first(), snaps.last()) else {
        return Err(Error::Config(format!(
            "{} has no post-hoc EMA snapshots (in {}); train it with \
             train.phema_sigma_rels (e.g. [0.05, 0.10]) and train.phema_every_nimg set",
            run.display(),
            snapshot::dir(run).display()
        )));
    };
    let nimg = target.nimg.unwrap_or(last.nimg);
    if nimg < first.nimg || nimg > last.nimg {
        return Err(Error::InvalidValue {
            field: "nimg".into(),
            why: format!(
                "{nimg} is outside the snapshots of {}: they span nimg {}..={}",
                run.display(),
                first.nimg,
                last.nimg
            ),
        });
    }
    let wanted =
        |sr: f64| target.from.is_empty() || target.from.iter().any(|&f| (f - sr).abs() < 1e-9);
    let mut sources: Vec<Source> = Vec::new();
    for (k, si) in snaps.iter().enumerate().filter(|(_, si)| si.nimg <= nimg) {
        for (j, (&gamma, &sr)) in si.gammas.iter().zip(&si.sigma_rels).enumerate() {
            if wanted(sr) {
                let t = si.nimg as f64;
                sources.push((k, j, PowerProfile { gamma, t }));
            }
        }
    }
    if sources.is_empty() {
        return Err(Error::InvalidValue {
            field: "from".into(),
            why: format!(
                "none of the σ_rels {:?} is stored in {}'s snapshots (they keep {:?})",
                target.from,
                run.display(),
                last.sigma_rels
            ),
        });
    }
    let profiles: Vec<PowerProfile> = sources.iter().map(|s| s.2).collect();
    let solver = Solver::new(&profiles)?;
    let at = |sr: f64| PowerProfile {
        gamma: gamma_from_sigma_rel(sr),
        t: nimg as f64,
    };
    let fit = solver.fit(at(s));
    if fit.residual > TOLERANCE {
        // The σ_rels of a log grid on [0.005, 0.28) whose fit passes.
        let ok: Vec<f64> = (0..=80)
            .map(|i| 0.005 * (0.279f64 / 0.005).powf(i as f64 / 80.0))
            .filter(|&g| solver.fit(at(g)).residual <= TOLERANCE)
            .collect();
        let range = match (ok.first(), ok.last()) {
            (Some(lo), Some(hi)) => format!("about {lo:.3}..{hi:.3}"),
            _ => "none".into(),
        };
        return Err(Error::InvalidValue {
            field: "sigma_rel".into(),
            why: format!(
                "σ_rel {s} at nimg {nimg} cannot be reconstructed from the stored profiles \
                 (σ_rel {:?}): relative L2 residual {:.3} > {TOLERANCE}; the reconstructable \
                 range there is {range}",
                last.sigma_rels, fit.residual
            ),
        });
    }
    Ok(Plan {
        snaps,
        sources,
        nimg,
        fit,
    })
}

/// The EMA weights of `run` at `target`, combined from its snapshots.
pub fn reconstruct(run: &Path, target: &Target) -> Result<Reconstruction> {
    let Plan {
        snaps,
        sources,
        nimg,
        fit,
    } = plan(run, target)?;
    let mut acc: Vec<Vec<f64>> = Vec::new();
    let mut template: Vec<HostParam> = Vec::new();
    let mut k_loaded = usize::MAX;
    let mut loaded: Vec<Vec<HostParam>> = Vec::new();
    for (&(k, j, _), &x) in sources.iter().zip(&fit.coefficients) {
        if k != k_loaded {
            loaded = snapshot::read(&snaps[k])?;
            k_loaded = k;
        }
        let ps = &loaded[j];
        if template.is_empty() {
            template = ps.clone();
            acc = ps.iter().map(|p| vec![0.0; p.data.len()]).collect();
        }
        let fits = ps.len() == template.len()
            && ps
                .iter()
                .zip(&template)
                .all(|(a, b)| a.name == b.name && a.shape == b.shape);
        if !fits {
            return Err(Error::BadFile {
                path: snaps[k].path.clone(),
                why: "its parameters differ in names or shapes from the other snapshots'".into(),
            });
        }
        for (a, p) in acc.iter_mut().zip(ps) {
            for (av, &pv) in a.iter_mut().zip(&p.data) {
                *av += x * pv as f64;
            }
        }
    }
    let params = template
        .into_iter()
        .zip(acc)
        .map(|(p, a)| HostParam {
            data: a.iter().map(|&v| v as f32).collect(),
            ..p
        })
        .collect();
    let terms = sources
        .iter()
        .zip(&fit.coefficients)
        .map(|(&(k, j, _), &coefficient)| Term {
            nimg: snaps[k].nimg,
            sigma_rel: snaps[k].sigma_rels[j],
            coefficient,
        })
        .collect();
    Ok(Reconstruction {
        sigma_rel: target.sigma_rel,
        nimg,
        terms,
        mass: fit.mass,
        residual: fit.residual,
        params,
    })
}

/// Writes `r`'s weights to `path` as safetensors (tensors named by parameter; σ_rel, nimg
/// and the residual in the metadata), atomically.
pub fn write_weights(path: &Path, r: &Reconstruction) -> Result<()> {
    let meta = serde_json::json!({
        "sigma_rel": r.sigma_rel, "nimg": r.nimg, "residual": r.residual,
    });
    let named: Vec<(String, &HostParam)> = r.params.iter().map(|p| (p.name.clone(), p)).collect();
    let file = snapshot::serialize(&named, &meta)?;
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::fsutil::create_dir(d)?;
    }
    crate::fsutil::write_atomic(path, &file)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::train::config::RunConfig;
    use crate::train::presets::preset;
    use crate::train::run::Quiet;
    use std::path::PathBuf;

    /// `fmnist` with the tiny test U-Net on the 200-image fixture: 32 steps of 16 images,
    /// post-hoc EMA profiles `sigma_rels` snapshotted every 2 steps (16 snapshots).
    pub(crate) fn tiny_phema_cfg(sigma_rels: &[f64]) -> RunConfig {
        let mut c = preset("fmnist").unwrap();
        c.data.path = crate::train::image::tests::fixture_dir()
            .display()
            .to_string();
        c.unet = Some(crate::models::unet::UnetConfig {
            attn_levels: Vec::new(),
            ..crate::train::image::tests::tiny()
        });
        c.train.batch = 16;
        c.train.duration_nimg = 512;
        c.train.checkpoint_every_nimg = 256;
        c.train.log_every_nimg = 256;
        c.train.sample_every_nimg = 0;
        c.train.lr.rampup_nimg = 0.0;
        c.sampler.steps = 2;
        c.train.phema_sigma_rels = sigma_rels.to_vec();
        c.train.phema_every_nimg = 32;
        c
    }

    pub(crate) fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("curadiff-phema-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn flat(ps: &[HostParam]) -> Vec<f64> {
        ps.iter()
            .flat_map(|p| p.data.iter().map(|&v| v as f64))
            .collect()
    }

    fn dist(a: &[f64], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f64>()
            .sqrt()
    }

    fn norm(a: &[f64]) -> f64 {
        a.iter().map(|x| x * x).sum::<f64>().sqrt()
    }

    #[test]
    fn reconstruction_from_two_profiles_matches_stored_and_tracked_emas() {
        // One tiny run keeps σ_rel 0.05, 0.075 and 0.10. (a) 0.05 at a snapshot time,
        // reconstructed from every stored profile, is that snapshot's stored 0.05 weights.
        // (c) 0.075 reconstructed from 0.05 and 0.10 alone is close to the 0.075 EMA tracked
        // during the same training, far closer than either stored profile is to it.
        let dir = tmp("rec");
        crate::train::run::train(&dir, &tiny_phema_cfg(&[0.05, 0.075, 0.10]), &mut Quiet).unwrap();
        let snaps = snapshot::list(&dir).unwrap();
        assert_eq!(snaps.len(), 16);
        assert_eq!((snaps[0].nimg, snaps[15].nimg), (32, 512));

        let stored = snapshot::read(&snaps[7]).unwrap();
        let r = reconstruct(
            &dir,
            &Target {
                sigma_rel: 0.05,
                nimg: Some(snaps[7].nimg),
                from: Vec::new(),
            },
        )
        .unwrap();
        assert!(r.residual < 1e-6, "residual {}", r.residual);
        let (got, want) = (flat(&r.params), flat(&stored[0]));
        let e = dist(&got, &want) / norm(&want);
        assert!(e < 1e-5, "stored profile: relative L2 error {e}");

        let last = snapshot::read(&snaps[15]).unwrap();
        let (e05, tracked, e10) = (flat(&last[0]), flat(&last[1]), flat(&last[2]));
        let r = reconstruct(
            &dir,
            &Target {
                sigma_rel: 0.075,
                nimg: None,
                from: vec![0.05, 0.10],
            },
        )
        .unwrap();
        assert!(r.terms.iter().all(|t| t.sigma_rel != 0.075));
        let got = flat(&r.params);
        let rel = dist(&got, &tracked) / norm(&tracked);
        let gap = dist(&e05, &tracked).min(dist(&e10, &tracked));
        let vs_gap = dist(&got, &tracked) / gap;
        eprintln!(
            "σ_rel 0.075 from 0.05 and 0.10: residual {:.2e}, relative L2 error of the \
             weights {rel:.2e}, {vs_gap:.3} of the nearest stored profile's distance",
            r.residual
        );
        assert!(vs_gap < 0.25, "{vs_gap}");
    }

    #[test]
    fn refusals_name_the_problem_and_the_range() {
        let dir = tmp("refuse");
        let mut cfg = tiny_phema_cfg(&[0.05, 0.10]);
        cfg.train.duration_nimg = 64;
        crate::train::run::train(&dir, &cfg, &mut Quiet).unwrap();
        let msg = |t: Target| reconstruct(&dir, &t).unwrap_err().to_string();
        let m = msg(Target::at(0.01));
        assert!(
            m.contains("cannot be reconstructed") && m.contains("range"),
            "{m}"
        );
        let m = msg(Target::at(0.5));
        assert!(m.contains("(0, 0.28)"), "{m}");
        let m = msg(Target {
            nimg: Some(16),
            ..Target::at(0.05)
        });
        assert!(m.contains("32..=64"), "{m}");
        let plain = tmp("plain");
        cfg.train.phema_sigma_rels.clear();
        cfg.train.phema_every_nimg = 0;
        crate::train::run::train(&plain, &cfg, &mut Quiet).unwrap();
        let m = reconstruct(&plain, &Target::at(0.05))
            .unwrap_err()
            .to_string();
        assert!(m.contains("train.phema_sigma_rels"), "{m}");
    }
}
