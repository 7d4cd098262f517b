//! `curadiff bench`: the speed benchmarks (`curadiff::bench::speed`) and grids
//! (`curadiff::bench::grid`), printed as JSON lines.

use anyhow::Result;
use std::time::Instant;

/// Times `steps` training steps of `name` (with `sets` overrides); prints one JSON line.
pub fn speed(name: &str, steps: u64, sets: &[String]) -> Result<()> {
    println!("{}", curadiff::bench::speed::speed(name, steps, sets)?);
    Ok(())
}

/// Runs a grid file into `out` and writes its report.
pub fn grid(file: &std::path::Path, out: &std::path::Path) -> Result<()> {
    let g = curadiff::bench::grid::Grid::load(file)?;
    let cells = g.arms.len() * g.seeds.len();
    eprintln!(
        "grid {}: {} arms × {} seeds = {cells} cells",
        file.display(),
        g.arms.len(),
        g.seeds.len()
    );
    let t = Instant::now();
    let (ran, skipped, failed) =
        curadiff::bench::grid::run_grid(&g, out, &mut |m| eprintln!("{m}"))?;
    let arms: Vec<String> = g.arms.iter().map(|a| a.name.clone()).collect();
    curadiff::bench::report::write_report(out, &arms, &g.targets)?;
    println!(
        "{}",
        serde_json::json!({
            "cells": cells, "ran": ran, "skipped": skipped, "failed": failed,
            "seconds": t.elapsed().as_secs_f64(),
            "report": out.join("report.md"),
        })
    );
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {cells} cells failed; see {}",
            out.join("report.md").display()
        );
    }
    Ok(())
}
