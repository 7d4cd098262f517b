//! `curadiff bench`: the speed benchmarks (`curadiff::bench::speed`) and grids
//! (`curadiff::bench::grid`, sharded and merged by `curadiff::bench::shard`), printed as
//! JSON lines.

use anyhow::{Context, Result};
use curadiff::bench::classifier_grid::{self, ClassifierGrid};
use curadiff::bench::{grid::Grid, report, shard};
use std::path::Path;
use std::time::Instant;

/// Times `steps` training steps of `name` (with `sets` overrides); prints one JSON line.
pub fn speed(name: &str, steps: u64, sets: &[String]) -> Result<()> {
    println!("{}", curadiff::bench::speed::speed(name, steps, sets)?);
    Ok(())
}

/// A classifier grid (`kind = "classifier"`): runs its cells not yet in `out` (none with
/// `report_only`), then prints and writes the report.
fn classifiers(file: &Path, text: &str, out: &Path, report_only: bool) -> Result<()> {
    let g = ClassifierGrid::parse(text, file)?;
    let t = Instant::now();
    let report = if report_only {
        let pool = classifier_grid::pool(&g).context("loading the grid's pool")?;
        classifier_grid::write_report(&g, out, &pool)?
    } else {
        eprintln!(
            "classifier grid {}: {} arms × {} seeds = {} cells",
            file.display(),
            g.arms.len(),
            g.seeds.len(),
            g.arms.len() * g.seeds.len()
        );
        classifier_grid::run_classifier_grid(&g, out, &mut |m| eprintln!("{m}"))?
    };
    println!("{report}");
    eprintln!(
        "{:.1} s; report: {}",
        t.elapsed().as_secs_f64(),
        out.join("report.md").display()
    );
    Ok(())
}

/// Runs a grid file into `out` and writes its report; with `shard` (`i/N`), runs only that
/// shard's cells into its own results file (no report); with `report_only`, runs nothing
/// and merges the results files of `out` into `results.jsonl` and the report.
pub fn grid(file: &Path, out: &Path, shard_spec: Option<&str>, report_only: bool) -> Result<()> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the grid file {}", file.display()))?;
    if classifier_grid::is_classifier_grid(&text) {
        if shard_spec.is_some() {
            anyhow::bail!(curadiff::Error::Config(format!(
                "{} is a classifier grid, which runs in one process: drop --shard",
                file.display()
            )));
        }
        return classifiers(file, &text, out, report_only);
    }
    let shard = shard_spec.map(shard::Shard::parse).transpose()?;
    let g = Grid::load(file)?;
    let cells = g.arms.len() * g.seeds.len();
    let t = Instant::now();
    if !report_only {
        let of = shard.map_or(String::new(), |s| format!(", shard {s}"));
        eprintln!(
            "grid {}: {} arms × {} seeds = {cells} cells{of}",
            file.display(),
            g.arms.len(),
            g.seeds.len()
        );
    }
    let (ran, skipped, failed) = if report_only {
        (0, 0, 0)
    } else {
        curadiff::bench::grid::run_grid(&g, out, shard.as_ref(), &mut |m| eprintln!("{m}"))?
    };
    if let Some(s) = shard {
        println!(
            "{}",
            serde_json::json!({
                "cells": cells, "shard": s.to_string(), "ran": ran, "skipped": skipped,
                "failed": failed, "seconds": t.elapsed().as_secs_f64(),
                "results": shard::results_file(out, Some(&s)),
            })
        );
        eprintln!(
            "when every shard is done: curadiff bench --grid {} --out {} --report",
            file.display(),
            out.display()
        );
        if failed > 0 {
            anyhow::bail!("{failed} cells of shard {s} failed; see its results file");
        }
        return Ok(());
    }
    let m = shard::merge(&g, out)?;
    let arms: Vec<String> = g.arms.iter().map(|a| a.name.clone()).collect();
    report::write_report(out, &arms, &g.targets)?;
    let names = |cs: &[shard::Cell]| -> Vec<String> {
        cs.iter().map(|(a, s)| format!("{a} seed {s}")).collect()
    };
    let mut summary = serde_json::json!({
        "cells": cells, "complete": m.complete, "failed": m.failed.len(),
        "missing": names(&m.missing), "files": m.files,
        "report": out.join("report.md"),
    });
    if !report_only {
        summary["ran"] = ran.into();
        summary["skipped"] = skipped.into();
        summary["seconds"] = t.elapsed().as_secs_f64().into();
    }
    println!("{summary}");
    if !m.missing.is_empty() {
        eprintln!(
            "{} of {cells} cells have no results yet: {}",
            m.missing.len(),
            names(&m.missing).join(", ")
        );
    }
    if !m.failed.is_empty() {
        anyhow::bail!(
            "{} of {cells} cells failed ({}); see {}",
            m.failed.len(),
            names(&m.failed).join(", "),
            out.join("report.md").display()
        );
    }
    Ok(())
}
