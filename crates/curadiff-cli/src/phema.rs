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

/// `curadiff phema`: writes the reconstruction and prints how it was made.
pub fn write_reconstruction(
    run: &Path,
    sigma_rel: f64,
    nimg: Option<u64>,
    out: Option<PathBuf>,
) -> Result<()> {
    let target = Target {
        nimg,
        ..Target::at(sigma_rel)
    };
    let r = reconstruct::reconstruct(run, &target)
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
    println!(
        "{}",
        serde_json::json!({
            "run": run, "sigma_rel": r.sigma_rel, "nimg": r.nimg, "residual": r.residual,
            "mass": r.mass, "out": out, "coefficients": terms,
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
