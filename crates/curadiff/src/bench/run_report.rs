//! `curadiff report --run R`: `R/report.html` for one training run, from the files the run
//! wrote: the loss, σ, learning-rate and time curves of `stats.jsonl`, a table of the logged
//! intervals, the seconds by phase, the final pictures, the noise-schedule profiles where the
//! run has them, and the provenance (the run's `config.toml`, commit, CPU, date, seconds).

use std::path::{Path, PathBuf};

use super::doc::{Block, Table};
use super::report_cells::noise_blocks;
use super::report_html::{page, Provenance};
use crate::diffusion::infonoise::Refresh;
use crate::error::{Error, Result};
use crate::plot::lines::{line_svg, LinePlot, Series};
use crate::train::noise_log;
use crate::train::run::RunDir;
use crate::train::stats::{self, StatsLine};

/// Rows of the intervals table at most (evenly spread, the last always shown).
const TABLE_ROWS: usize = 20;
/// Intermediate sample grids (`samples/grid-nimg-N.png`) shown at most, the newest.
const GRIDS_SHOWN: usize = 4;

/// A line plot of the stats against images trained, kept in the page only.
fn plot(caption: &str, ylabel: &str, series: Vec<Series>) -> Result<Block> {
    let title = format!("{caption} vs images trained");
    let svg = line_svg(
        &series,
        &LinePlot {
            title: &title,
            xlabel: "images trained",
            ylabel,
        },
    )?;
    Ok(Block::Plot {
        caption: title,
        stem: String::new(),
        svg,
    })
}

fn series(name: &str, color: usize, rows: &[StatsLine], f: fn(&StatsLine) -> f64) -> Series {
    Series {
        name: name.to_string(),
        color,
        points: rows.iter().map(|r| (r.nimg as f64, f(r), 0.0)).collect(),
    }
}

fn num(v: f64) -> String {
    if !v.is_finite() {
        "—".into()
    } else if v != 0.0 && (v.abs() < 1e-3 || v.abs() >= 1e6) {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

/// The logged intervals, evenly thinned to [`TABLE_ROWS`] with the last kept.
fn intervals(rows: &[StatsLine]) -> Table {
    let n = rows.len();
    let mut idx: Vec<usize> = if n <= TABLE_ROWS {
        (0..n).collect()
    } else {
        (0..TABLE_ROWS)
            .map(|i| i * (n - 1) / (TABLE_ROWS - 1))
            .collect()
    };
    idx.dedup();
    let head = [
        "step",
        "images trained",
        "images scored",
        "loss",
        "learning rate",
        "σ 10 %",
        "σ 50 %",
        "σ 90 %",
        "seconds",
        "selection",
    ];
    Table {
        head: head.map(String::from).to_vec(),
        left: 0,
        rows: idx
            .into_iter()
            .map(|i| {
                let r = &rows[i];
                vec![
                    r.step.to_string(),
                    r.nimg.to_string(),
                    r.nimg_scored.to_string(),
                    num(r.loss),
                    num(r.lr),
                    num(r.sigma_q[0]),
                    num(r.sigma_q[1]),
                    num(r.sigma_q[2]),
                    format!("{:.1}", total(r)),
                    match r.selection {
                        Some(true) => "on".into(),
                        Some(false) => "off".into(),
                        None => "—".into(),
                    },
                ]
            })
            .collect(),
    }
}

/// Cumulative seconds of a stats line (its `total`, or the sum of the phases).
fn total(r: &StatsLine) -> f64 {
    r.seconds
        .get("total")
        .copied()
        .unwrap_or_else(|| r.seconds.values().sum())
}

/// The seconds by phase at the last interval, with their share of the total.
fn phases(last: &StatsLine) -> Table {
    let all = total(last);
    Table {
        head: vec!["phase".into(), "seconds".into(), "share".into()],
        left: 1,
        rows: last
            .seconds
            .iter()
            .filter(|(k, _)| k.as_str() != "total")
            .map(|(k, v)| {
                let share = if all > 0.0 {
                    format!("{:.1} %", 100.0 * v / all)
                } else {
                    "—".into()
                };
                vec![k.clone(), format!("{v:.2}"), share]
            })
            .collect(),
    }
}

/// The stats of run directory `run`; errors name the path and the fix.
fn read_stats(run: &RunDir) -> Result<Vec<StatsLine>> {
    let path = run.stats();
    let fix = format!(
        "a run writes it at every logging interval; train (or resume) it with `curadiff train \
         --preset PRESET --out {}`",
        run.root.display()
    );
    if !path.exists() {
        return Err(Error::Config(format!(
            "{} is missing, so there is nothing to report: {fix}",
            path.display()
        )));
    }
    let rows = stats::read(&path)?;
    if rows.is_empty() {
        return Err(Error::Config(format!(
            "{} has no logged intervals yet: {fix}",
            path.display()
        )));
    }
    Ok(rows)
}

/// The pictures the run drew: `samples/final.png` and the newest sample grids.
fn pictures(run: &RunDir) -> Result<Vec<Block>> {
    let dir = run.samples();
    let mut grids: Vec<(u64, PathBuf)> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().to_string();
                    let n = name
                        .strip_prefix("grid-nimg-")?
                        .strip_suffix(".png")?
                        .parse::<u64>()
                        .ok()?;
                    Some((n, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    grids.sort();
    let mut shown: Vec<(String, String, PathBuf)> = grids
        .iter()
        .skip(grids.len().saturating_sub(GRIDS_SHOWN))
        .map(|(n, p)| {
            (
                format!("EMA samples after {n} images"),
                format!("samples/grid-nimg-{n}.png"),
                p.clone(),
            )
        })
        .collect();
    let fin = dir.join("final.png");
    if fin.exists() {
        shown.push((
            "EMA samples at the end of training".into(),
            "samples/final.png".into(),
            fin,
        ));
    }
    shown
        .into_iter()
        .map(|(caption, path, file)| {
            let png = std::fs::read(&file).map_err(|e| Error::Io {
                path: file.clone(),
                source: e,
            })?;
            Ok(Block::Picture { caption, path, png })
        })
        .collect()
}

/// The blocks of the run report of `root` and its provenance.
pub fn run_blocks(root: &Path) -> Result<(Vec<Block>, Provenance)> {
    if !root.is_dir() {
        return Err(Error::Config(format!(
            "{} is not a directory; give the run directory that `curadiff train --out DIR` \
             wrote",
            root.display()
        )));
    }
    let run = RunDir::new(root);
    run.read_run_config()?;
    let config = std::fs::read_to_string(run.config()).map_err(|e| Error::Io {
        path: run.config(),
        source: e,
    })?;
    let rows = read_stats(&run)?;
    let last = &rows[rows.len() - 1];
    let name = root.file_name().map_or_else(
        || root.display().to_string(),
        |n| n.to_string_lossy().to_string(),
    );
    let mut blocks = vec![
        Block::Title(format!("Run report: {name}")),
        Block::Para(format!(
            "{} steps, {} images trained ({} scored) in {:.1} s; loss of the last logging \
             interval {}. Quality metrics (FD, KID) are not logged during training: `curadiff \
             eval images --run {} --snapshots` scores an image run's snapshots, and grids \
             (`curadiff bench --grid`) report them.",
            last.step,
            last.nimg,
            last.nimg_scored,
            total(last),
            num(last.loss),
            root.display()
        )),
        Block::Heading("Training curves".into()),
        plot(
            "Training loss (mean over each logging interval)",
            "weighted loss",
            vec![series("loss", 0, &rows, |r| r.loss)],
        )?,
        plot(
            "Training noise levels (quantiles of σ per interval)",
            "σ",
            vec![
                series("σ 90 %", 3, &rows, |r| r.sigma_q[2]),
                series("σ 50 %", 1, &rows, |r| r.sigma_q[1]),
                series("σ 10 %", 0, &rows, |r| r.sigma_q[0]),
            ],
        )?,
        plot(
            "Learning rate",
            "learning rate",
            vec![series("lr", 2, &rows, |r| r.lr)],
        )?,
        plot(
            "Cumulative training time",
            "seconds",
            vec![series("total", 4, &rows, total)],
        )?,
        Block::Heading(format!(
            "Logged intervals ({} of {})",
            rows.len().min(TABLE_ROWS),
            rows.len()
        )),
        Block::Table(intervals(&rows)),
        Block::Heading("Seconds by phase (cumulative, last interval)".into()),
        Block::Table(phases(last)),
    ];
    let pics = pictures(&run)?;
    if !pics.is_empty() {
        blocks.push(Block::Heading("Samples".into()));
        blocks.extend(pics);
    }
    let refreshes = noise_log::read(root)?;
    let noise = noise_blocks(root, "", "this run")?;
    if !refreshes.is_empty() || !noise.is_empty() {
        blocks.push(Block::Heading("Noise schedule".into()));
        blocks.extend(noise);
        if !refreshes.is_empty() {
            blocks.push(Block::Table(Table {
                head: [
                    "refresh at step",
                    "gate c (from)",
                    "π: σ 10 %",
                    "σ 50 %",
                    "σ 90 %",
                ]
                .map(String::from)
                .to_vec(),
                left: 0,
                rows: refreshes
                    .iter()
                    .map(|r| {
                        vec![
                            r.step.to_string(),
                            gate_c(r),
                            num(r.quantiles[0]),
                            num(r.quantiles[1]),
                            num(r.quantiles[2]),
                        ]
                    })
                    .collect(),
            }));
        }
    }
    let prov = Provenance::collect(config, "training, all phases", Some(total(last)));
    Ok((blocks, prov))
}

/// The pivot of a refresh with where it came from, e.g. "0.81 (onset)".
fn gate_c(r: &Refresh) -> String {
    match (r.gate_c, r.gate_c_source) {
        (Some(c), Some(src)) => format!("{} ({})", num(c), src.name()),
        (Some(c), None) => num(c),
        (None, _) => "—".into(),
    }
}

/// Writes `root/report.html`; returns its path.
pub fn write_run_report(root: &Path) -> Result<PathBuf> {
    let (blocks, prov) = run_blocks(root)?;
    let title = match blocks.first() {
        Some(Block::Title(t)) => t.clone(),
        _ => "Run report".into(),
    };
    let path = root.join("report.html");
    crate::fsutil::write_atomic(&path, page(&title, &blocks, &prov).as_bytes())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::presets::preset;

    fn line(step: u64, loss: f64) -> StatsLine {
        StatsLine {
            step,
            nimg: step * 256,
            nimg_scored: step * 512,
            loss,
            lr: 0.01,
            seconds: [("data", 0.5 * step as f64), ("train", 1.5 * step as f64)]
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .chain([("total".to_string(), 2.0 * step as f64)])
                .collect(),
            sigma_q: [0.1, 1.0, 4.0],
            selection: Some(true),
        }
    }

    #[test]
    fn run_report_shows_the_stats_and_refuses_bad_input() {
        let root = std::env::temp_dir().join(format!("curadiff-run-report-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        // Not a directory, then no config, then no stats: each error names the path and the fix.
        let err = write_run_report(&root).unwrap_err().to_string();
        assert!(err.contains(&root.display().to_string()) && err.contains("curadiff train"));
        std::fs::create_dir_all(&root).unwrap();
        let err = write_run_report(&root).unwrap_err().to_string();
        assert!(err.contains("config.toml"), "{err}");
        let cfg = preset("toy").unwrap().to_toml().unwrap();
        std::fs::write(root.join("config.toml"), &cfg).unwrap();
        let err = write_run_report(&root).unwrap_err().to_string();
        assert!(
            err.contains("stats.jsonl") && err.contains("curadiff train"),
            "{err}"
        );
        let text: String = (1..=30)
            .map(|s| serde_json::to_string(&line(s, 1.0 / s as f64)).unwrap() + "\n")
            .collect();
        std::fs::write(root.join("stats.jsonl"), text).unwrap();
        let path = write_run_report(&root).unwrap();
        let html = std::fs::read_to_string(path).unwrap();
        assert_eq!(html.matches("<svg").count(), 4);
        // The last interval in full: step 30, 7680 images, loss 1/30, 60 s.
        let n = |v: &str| format!("<td class=\"n\">{v}</td>");
        let last: String = [
            "30", "7680", "15360", "0.0333", "0.0100", "0.1000", "1.0000",
        ]
        .iter()
        .map(|v| n(v))
        .collect();
        assert!(html.contains(&last), "{last}");
        assert!(html.contains(&n("60.0")));
        assert!(html.contains("Logged intervals (20 of 30)"));
        // Seconds by phase: data 15 of 60 s.
        assert!(html.contains(&format!("<td>data</td>{}{}", n("15.00"), n("25.0 %"))));
        assert!(html.contains("<td>seconds (training, all phases)</td><td>60.0</td>"));
        assert!(html.contains(&super::super::report_html::escape(cfg.trim_end())));
        let _ = std::fs::remove_dir_all(&root);
    }
}
