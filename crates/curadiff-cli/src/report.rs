//! `curadiff report --run R`: the self-contained HTML report of one training run
//! (`curadiff::bench::run_report`).

use anyhow::Result;
use std::path::Path;

/// Writes `run/report.html` and prints its path as a JSON line.
pub fn run(run: &Path) -> Result<()> {
    let path = curadiff::bench::run_report::write_run_report(run)?;
    println!("{}", serde_json::json!({ "report": path }));
    Ok(())
}
