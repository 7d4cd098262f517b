//! Post-hoc EMA commands: reconstruct a run's EMA at a chosen σ_rel, and the tuned
//! autoguidance sweep.

use anyhow::{Context, Result};
use curadiff::bench::guidance_sweep::{self, SweepConfig};
use curadiff::train::phema::reconstruct::{self, Target};
use std::path::{Path, PathBuf};

use crate::args::PhemaArgs;

/// The main and guide targets of `--phema`, `--phema-nimg` and `--guide-phema`.
pub fn targets(a: &PhemaArgs) -> (Option<Target>, Option<Target>) {
    (
        a.phema.map(|s| Target {
            nimg: a.phema_nimg,
            ..Target::at(s)
        }),
        a.guide_phema.map(Target::at),
    )
}

/// `curadiff phema`: writes the reconstruction and prints how it was made; compares it with
/// the stored weights of the target σ_rel when the run tracks that one too.
pub fn write_reconstruction(run: &Path, target: &Target, out: Option<PathBuf>) -> Result<()> {
    let r = reconstruct::reconstruct(run, target)
        .with_context(|| format!("post-hoc EMA of {}", run.display()))?;
    let out = out.unwrap_or_else(|| {
        run.join(format!(
            "ema-phema-{:.3}-{:012}.safetensors",
            r.sigma_rel, r.nimg
        ))
    });
    reconstruct::write_weights(&out, &r)?;
    let terms: Vec<_> = r
        .terms
        .iter()
        .map(
            |t| serde_json::json!({ "nimg": t.nimg, "sigma_rel": t.sigma_rel, "x": t.coefficient }),
        )
        .collect();
    let tracked = tracked_rel_l2(run, &r)?;
    println!(
        "{}",
        serde_json::json!({
            "run": run, "sigma_rel": r.sigma_rel, "nimg": r.nimg, "residual": r.residual,
            "mass": r.mass, "out": out, "tracked_rel_l2": tracked, "coefficients": terms,
        })
    );
    Ok(())
}

/// `curadiff sweep-guidance`.
pub fn sweep(c: &SweepConfig) -> Result<()> {
    let s = guidance_sweep::run(c, &mut |m| eprintln!("{m}"))
        .with_context(|| format!("guidance sweep into {}", c.out.display()))?;
    eprintln!(
        "{} points ({} evaluated now); table: {}",
        s.points.len(),
        s.evaluated,
        c.out.join("results.md").display()
    );
    let line = |name: &str, p: &Option<guidance_sweep::Point>| match p {
        Some(p) => println!("{name:<22} FD {:>7.2}  {}", p.fd, p.label()),
        None => println!("{name:<22} –"),
    };
    line("best autoguidance", &s.best_auto);
    if let Some(a) = &s.best_auto {
        let same = s.points.iter().find(|p| {
            p.guidance == guidance_sweep::Guidance::Unguided && p.main_sigma_rel == a.main_sigma_rel
        });
        line("unguided, same main", &same.cloned());
    }
    line("best unguided", &s.best_unguided);
    line("best class-free", &s.best_cfg);
    Ok(())
}

/// ‖reconstruction − tracked‖ / ‖tracked‖ when the snapshot at `r.nimg` stores a profile at
/// `r.sigma_rel` that the reconstruction did not use.
fn tracked_rel_l2(run: &Path, r: &reconstruct::Reconstruction) -> Result<Option<f64>> {
    use curadiff::train::phema::snapshot;
    let same = |s: f64| (s - r.sigma_rel).abs() < 1e-9;
    if r.terms.iter().any(|t| same(t.sigma_rel)) {
        return Ok(None);
    }
    let snaps = snapshot::list(run)?;
    let Some(info) = snaps.iter().find(|s| s.nimg == r.nimg) else {
        return Ok(None);
    };
    let Some(j) = info.sigma_rels.iter().position(|&s| same(s)) else {
        return Ok(None);
    };
    let stored = snapshot::read(info)?;
    let (mut d, mut n) = (0.0f64, 0.0f64);
    for (a, b) in r.params.iter().zip(&stored[j]) {
        for (x, y) in a.data.iter().zip(&b.data) {
            d += (*x as f64 - *y as f64).powi(2);
            n += (*y as f64).powi(2);
        }
    }
    Ok(Some((d / n.max(1e-30)).sqrt()))
}
