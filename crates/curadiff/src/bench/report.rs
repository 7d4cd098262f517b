//! `report.md`, `report.html` and plots from a grid's `results.jsonl`: mean ± std over seeds of each arm at
//! each budget point (equal images trained, equal seconds, and at the end), unguided and
//! autoguided, plus the time per step by phase.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::doc::{to_markdown, Block, Table};
use super::grid::{PointResult, ResultLine, Targets};
use super::report_html::{self, Provenance};
use crate::error::{Error, Result};
use crate::plot::lines::{line_plot, LinePlot, Series, COLORS};
use crate::toyjob::mean_std;

/// A failed cell: arm, seed, error.
pub type FailedCell = (String, u64, String);

/// Reads `results.jsonl`: the evaluated points and the failed cells.
pub fn read_results(path: &Path) -> Result<(Vec<PointResult>, Vec<FailedCell>)> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let mut points = Vec::new();
    let mut failed = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        match serde_json::from_str::<ResultLine>(line) {
            Ok(ResultLine::Point(p)) => points.push(*p),
            Ok(ResultLine::Failed { arm, seed, error }) => failed.push((arm, seed, error)),
            Err(e) => {
                return Err(Error::BadFile {
                    path: path.to_path_buf(),
                    why: format!("line {}: {e}", i + 1),
                })
            }
        }
    }
    Ok((points, failed))
}

type Metric = (&'static str, fn(&PointResult) -> f64);

const TOY_METRICS: [Metric; 5] = [
    ("exact loss", |p| p.exact_loss.unwrap_or(f64::NAN)),
    ("mandala", |p| {
        p.unguided.as_ref().map_or(f64::NAN, |m| m.mandala)
    }),
    ("classification", |p| {
        p.unguided.as_ref().map_or(f64::NAN, |m| m.classification)
    }),
    ("guided mandala", |p| {
        p.guided.as_ref().map_or(f64::NAN, |m| m.mandala)
    }),
    ("guided classification", |p| {
        p.guided.as_ref().map_or(f64::NAN, |m| m.classification)
    }),
];

const IMAGE_METRICS: [Metric; 5] = [
    ("FD", |p| p.images.as_ref().map_or(f64::NAN, |m| m.fd)),
    ("KID", |p| p.images.as_ref().map_or(f64::NAN, |m| m.kid)),
    ("precision", |p| {
        p.images.as_ref().map_or(f64::NAN, |m| m.precision)
    }),
    ("recall", |p| {
        p.images.as_ref().map_or(f64::NAN, |m| m.recall)
    }),
    ("class accuracy", |p| {
        p.images
            .as_ref()
            .and_then(|m| m.class_accuracy)
            .unwrap_or(f64::NAN)
    }),
];

const GUIDED_IMAGE_METRICS: [Metric; 2] = [
    ("autoguided FD", |p| {
        p.images_guided.as_ref().map_or(f64::NAN, |m| m.fd)
    }),
    ("autoguided class accuracy", |p| {
        p.images_guided
            .as_ref()
            .and_then(|m| m.class_accuracy)
            .unwrap_or(f64::NAN)
    }),
];

const CFG_IMAGE_METRICS: [Metric; 2] = [
    ("CFG FD", |p| {
        p.images_cfg.as_ref().map_or(f64::NAN, |m| m.fd)
    }),
    ("CFG class accuracy", |p| {
        p.images_cfg
            .as_ref()
            .and_then(|m| m.class_accuracy)
            .unwrap_or(f64::NAN)
    }),
];

/// The value of `f` where the points of one cell (ordered by x) first reach `ok`, linearly
/// interpolated in log x between the last miss and the first hit on the metric.
pub fn first_reach(pts: &[(f64, f64)], target: f64, higher_is_better: bool) -> Option<f64> {
    let ok = |v: f64| {
        if higher_is_better {
            v >= target
        } else {
            v <= target
        }
    };
    let i = pts.iter().position(|&(_, v)| ok(v))?;
    if i == 0 {
        return Some(pts[0].0);
    }
    let ((x0, v0), (x1, v1)) = (pts[i - 1], pts[i]);
    let t = if v1 != v0 {
        ((target - v0) / (v1 - v0)).clamp(0.0, 1.0)
    } else {
        1.0
    };
    Some((x0.ln() + t * (x1.ln() - x0.ln())).exp())
}

/// The "to reach the target" section: per arm, images trained and seconds needed to reach
/// each target (mean ± std over the seeds that reached it), and the speed-up over the
/// baseline arm (ratio of the means).
fn to_target(points: &[PointResult], arms: &[String], targets: &Targets) -> Vec<Block> {
    type Get = fn(&PointResult) -> f64;
    let mut list: Vec<(&str, f64, bool, Get)> = Vec::new();
    if let Some(t) = targets.exact_loss {
        list.push(("exact loss ≤", t, false, |p| {
            p.exact_loss.unwrap_or(f64::NAN)
        }));
    }
    if let Some(t) = targets.classification {
        list.push(("classification ≥", t, true, TOY_METRICS[2].1));
    }
    if let Some(t) = targets.fd {
        list.push(("FD ≤", t, false, IMAGE_METRICS[0].1));
    }
    if list.is_empty() {
        return Vec::new();
    }
    let baseline = targets
        .baseline
        .clone()
        .or_else(|| arms.first().cloned())
        .unwrap_or_default();
    let mut table = Table {
        head: [
            "target",
            "arm",
            "images trained",
            "speed-up (images)",
            "seconds",
            "speed-up (seconds)",
            "seeds reaching",
        ]
        .map(String::from)
        .to_vec(),
        left: 2,
        rows: Vec::new(),
    };
    for (label, target, higher, get) in list {
        let mut rows = Vec::new();
        for a in arms {
            let seeds: std::collections::BTreeSet<u64> = points
                .iter()
                .filter(|p| &p.arm == a)
                .map(|p| p.seed)
                .collect();
            let (mut imgs, mut secs) = (Vec::new(), Vec::new());
            for &seed in &seeds {
                let cell: Vec<&PointResult> = points
                    .iter()
                    .filter(|p| &p.arm == a && p.seed == seed)
                    .collect();
                let series = |x: &dyn Fn(&PointResult) -> f64, kind: &str| {
                    let mut v: Vec<(f64, f64)> = cell
                        .iter()
                        .filter(|p| p.kind == kind || p.kind == "final")
                        .map(|p| (x(p), get(p)))
                        .filter(|(x, _)| *x > 0.0)
                        .collect();
                    v.sort_by(|a, b| a.0.total_cmp(&b.0));
                    v
                };
                if let Some(n) = first_reach(&series(&|p| p.nimg as f64, "nimg"), target, higher) {
                    imgs.push(n);
                }
                let total = |p: &PointResult| p.seconds.values().sum::<f64>();
                if let Some(s) = first_reach(&series(&total, "seconds"), target, higher) {
                    secs.push(s);
                }
            }
            rows.push((a.clone(), imgs, secs, seeds.len()));
        }
        let base = rows
            .iter()
            .find(|r| r.0 == baseline)
            .map(|r| (mean_std(&r.1).0, mean_std(&r.2).0, r.1.len(), r.2.len()));
        for (a, imgs, secs, n) in &rows {
            let (mi, si) = mean_std(imgs);
            let (ms, ss) = mean_std(secs);
            let speed = |b: Option<f64>, m: f64, has: bool| match b {
                Some(b) if has && b > 0.0 && m > 0.0 => format!("{:.2}×", b / m),
                _ => "—".into(),
            };
            let fmt = |v: &[f64], m: f64, s: f64, prec: usize| {
                if v.is_empty() {
                    "not reached".to_string()
                } else {
                    format!("{m:.prec$} ± {s:.prec$}")
                }
            };
            table.rows.push(vec![
                format!("{label} {target}"),
                a.clone(),
                fmt(imgs, mi, si, 0),
                speed(base.filter(|b| b.2 > 0).map(|b| b.0), mi, !imgs.is_empty()),
                fmt(secs, ms, ss, 1),
                speed(base.filter(|b| b.3 > 0).map(|b| b.1), ms, !secs.is_empty()),
                format!("{}/{n} (images), {}/{n} (seconds)", imgs.len(), secs.len()),
            ]);
        }
    }
    vec![
        Block::Heading(format!(
            "To reach the target (speed-up relative to {baseline})"
        )),
        Block::Para("Interpolated in log scale between the last budget point that misses the target and the first that reaches it; the end of training counts as a point. Seeds that never reach it are counted in the last column.".into()),
        Block::Table(table),
    ]
}

/// A mean ± std cell: four decimals below 0.1, three above, "—" when there is no value.
pub fn mean_std_cell(v: &[f64]) -> String {
    let (m, s) = mean_std(v);
    if m.is_nan() {
        "—".to_string()
    } else if m.abs() < 0.1 {
        format!("{m:.4} ± {s:.4}")
    } else {
        format!("{m:.3} ± {s:.3}")
    }
}

/// The blocks of a grid report from its points and failed cells; plots are drawn into `out`
/// (as `METRIC-vs-KIND.{svg,png}`).
pub fn grid_blocks(
    out: &Path,
    points: &[PointResult],
    failed: &[FailedCell],
    arms: &[String],
    targets: &Targets,
) -> Result<Vec<Block>> {
    let images = points.iter().any(|p| p.images.is_some());
    let (metrics, plotted): (Vec<Metric>, Vec<Metric>) = if images {
        let mut m = IMAGE_METRICS.to_vec();
        let mut plotted = vec![IMAGE_METRICS[0], IMAGE_METRICS[4], IMAGE_METRICS[1]];
        if points.iter().any(|p| p.images_guided.is_some()) {
            m.extend(GUIDED_IMAGE_METRICS);
            plotted.push(GUIDED_IMAGE_METRICS[0]);
        }
        if points.iter().any(|p| p.images_cfg.is_some()) {
            m.extend(CFG_IMAGE_METRICS);
        }
        (m, plotted)
    } else {
        (
            TOY_METRICS.to_vec(),
            vec![TOY_METRICS[1], TOY_METRICS[3], TOY_METRICS[0]],
        )
    };
    let mut blocks = vec![Block::Title("Grid report".into())];
    let mut intro = String::from("mean ± std over seeds; EMA weights; ");
    if images {
        let n: Vec<String> = points
            .iter()
            .filter_map(|p| p.images.as_ref().map(|m| m.n))
            .collect::<std::collections::BTreeSet<usize>>()
            .iter()
            .map(|n| n.to_string())
            .collect();
        let net = points
            .iter()
            .find_map(|p| p.images.as_ref().map(|m| m.feature_network.clone()))
            .unwrap_or_default();
        let _ = write!(intro, "class-conditional samples (classes in turn; {} per evaluation) scored on the features of `{net}` against the 10,000 Fashion-MNIST test images. FD and KID depend on the number of samples: compare at equal counts.", n.join(" or "));
    } else {
        intro.push_str("guided = autoguidance with the seed's guide; exact loss = exact score-matching loss under the log-normal σ distribution (16,384 samples).");
    }
    blocks.push(Block::Para(intro));
    blocks.extend(to_target(points, arms, targets));
    for (kind, title) in [
        ("nimg", "At equal images trained"),
        ("seconds", "At equal seconds (selection overhead counted)"),
        ("final", "At the end of training"),
    ] {
        let rows: Vec<&PointResult> = points.iter().filter(|p| p.kind == kind).collect();
        if rows.is_empty() {
            continue;
        }
        blocks.push(Block::Heading(title.into()));
        let mut table = Table {
            head: ["arm", "point", "seeds"]
                .iter()
                .map(|s| s.to_string())
                .chain(metrics.iter().map(|m| m.0.to_string()))
                .collect(),
            left: 1,
            rows: Vec::new(),
        };
        let mut groups: BTreeMap<(usize, i64), Vec<&PointResult>> = BTreeMap::new();
        for p in &rows {
            let ai = arms.iter().position(|a| *a == p.arm).unwrap_or(usize::MAX);
            let key = if kind == "final" {
                0
            } else {
                (p.point * 1000.0).round() as i64
            };
            groups.entry((ai, key)).or_default().push(p);
        }
        for ((ai, key), g) in &groups {
            let name = arms.get(*ai).cloned().unwrap_or_else(|| g[0].arm.clone());
            let point = if kind == "final" {
                "end".to_string()
            } else {
                format!("{}", *key as f64 / 1000.0)
            };
            let mut row = vec![name, point, g.len().to_string()];
            row.extend(metrics.iter().map(|(_, f)| {
                let v: Vec<f64> = g.iter().map(|p| f(p)).collect();
                mean_std_cell(&v)
            }));
            table.rows.push(row);
        }
        blocks.push(Block::Table(table));
        if kind != "final" {
            for &(mname, f) in &plotted {
                blocks.push(plot_metric(out, &rows, arms, kind, mname, f)?);
            }
        }
    }
    blocks.extend(time_per_step(points, arms));
    if !failed.is_empty() {
        blocks.push(Block::Heading("Failed cells".into()));
        blocks.push(Block::List(
            failed
                .iter()
                .map(|(a, s, e)| format!("{a} seed {s}: {e}"))
                .collect(),
        ));
    }
    blocks.push(Block::Para(format!(
        "Colours in the PNG plots, in arm order: {}.",
        arms.iter()
            .enumerate()
            .map(|(i, a)| {
                let c = COLORS[i % COLORS.len()];
                format!("{a} rgb({},{},{})", c[0], c[1], c[2])
            })
            .collect::<Vec<_>>()
            .join(", ")
    )));
    blocks.extend(super::report_cells::cell_blocks(out, arms)?);
    Ok(blocks)
}

/// The plot of metric `f` of the rows of one kind ("nimg" or "seconds"), one series per arm.
fn plot_metric(
    out: &Path,
    rows: &[&PointResult],
    arms: &[String],
    kind: &str,
    mname: &str,
    f: fn(&PointResult) -> f64,
) -> Result<Block> {
    let series: Vec<Series> = arms
        .iter()
        .enumerate()
        .map(|(ai, a)| {
            let mut by_point: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
            for p in rows.iter().filter(|p| &p.arm == a) {
                by_point
                    .entry((p.point * 1000.0).round() as i64)
                    .or_default()
                    .push(f(p));
            }
            Series {
                name: a.clone(),
                color: ai,
                points: by_point
                    .into_iter()
                    .map(|(k, v)| {
                        let (m, s) = mean_std(&v);
                        (k as f64 / 1000.0, m, s)
                    })
                    .collect(),
            }
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    let stem = format!("{}-vs-{kind}", mname.replace(' ', "-"));
    let xl = if kind == "nimg" {
        "images trained"
    } else {
        "training time (s)"
    };
    let title = format!("{mname} vs {xl} (mean ± std over seeds)");
    let spec = LinePlot {
        title: &title,
        xlabel: xl,
        ylabel: mname,
    };
    let svg = line_plot(&series, &spec, &out.join(&stem))?;
    Ok(Block::Plot {
        caption: format!("{mname} vs {xl}"),
        stem,
        svg,
    })
}

/// Time per step by phase, from the final points. The selection overhead is what scoring
/// and selecting add to a step; its lower bound is the extra forward passes alone (the
/// `score` phase), so the ratio shows what the selection algorithm itself costs on top.
fn time_per_step(points: &[PointResult], arms: &[String]) -> Vec<Block> {
    let mut table = Table {
        head: [
            "arm",
            "steps",
            "data",
            "score",
            "select",
            "train",
            "noise schedule",
            "total",
            "overhead (score + select)",
            "overhead / forward passes",
            "nimg trained",
            "nimg scored",
        ]
        .map(String::from)
        .to_vec(),
        left: 1,
        rows: Vec::new(),
    };
    for a in arms {
        let fin: Vec<&PointResult> = points
            .iter()
            .filter(|p| p.kind == "final" && &p.arm == a)
            .collect();
        if fin.is_empty() {
            continue;
        }
        let per = |k: &str| {
            let v: Vec<f64> = fin
                .iter()
                .map(|p| 1e3 * p.seconds.get(k).copied().unwrap_or(0.0) / p.step.max(1) as f64)
                .collect();
            mean_std(&v).0
        };
        let total: Vec<f64> = fin
            .iter()
            .map(|p| 1e3 * p.seconds.values().sum::<f64>() / p.step.max(1) as f64)
            .collect();
        let (score, select) = (per("score"), per("select"));
        // Arms that score nothing (below 10 µs per step) have no lower bound to compare to.
        let ratio = if score > 0.01 {
            format!("{:.2}", (score + select) / score)
        } else {
            "—".into()
        };
        table.rows.push(vec![
            a.clone(),
            fin[0].step.to_string(),
            format!("{:.2}", per("data")),
            format!("{score:.2}"),
            format!("{select:.2}"),
            format!("{:.2}", per("train")),
            format!("{:.3}", per("noise")),
            format!("{:.2}", mean_std(&total).0),
            format!("{:.2}", score + select),
            ratio,
            fin[0].nimg.to_string(),
            fin[0].nimg_scored.to_string(),
        ]);
    }
    vec![
        Block::Heading("Time per step (ms, mean over seeds)".into()),
        Block::Table(table),
    ]
}

/// Training seconds summed over the cells' final points (all phases).
pub fn total_seconds(points: &[PointResult]) -> f64 {
    points
        .iter()
        .filter(|p| p.kind == "final")
        .map(|p| p.seconds.values().sum::<f64>())
        .sum()
}

/// Writes `report.md`, `report.html` and the plots into `out`.
pub fn write_report(out: &Path, arms: &[String], targets: &Targets) -> Result<()> {
    let (points, failed) = read_results(&out.join("results.jsonl"))?;
    let blocks = grid_blocks(out, &points, &failed, arms, targets)?;
    crate::fsutil::write_atomic(&out.join("report.md"), to_markdown(&blocks).as_bytes())?;
    let grid_file = out.join(super::grid::GRID_FILE);
    let config = std::fs::read_to_string(&grid_file).unwrap_or_else(|_| {
        format!(
            "({} is missing: the grid ran before grids recorded their file)",
            grid_file.display()
        )
    });
    let prov = Provenance::collect(
        config,
        "training seconds, all cells",
        Some(total_seconds(&points)),
    );
    let html = report_html::page("Grid report", &blocks, &prov);
    crate::fsutil::write_atomic(&out.join("report.html"), html.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy point of `arm` and `seed` with exact loss `loss` and classification `class`.
    fn toy_point(arm: &str, seed: u64, kind: &str, nimg: u64, loss: f64, class: f64) -> String {
        let m = serde_json::json!({
            "n": 100, "classification": class, "mandala": 0.5, "mmd": 0.0, "mean_loglik": 0.0,
        });
        serde_json::json!({
            "arm": arm, "seed": seed, "kind": kind, "point": nimg as f64, "step": nimg / 16,
            "nimg": nimg, "nimg_scored": nimg, "seconds": { "train": nimg as f64 / 1000.0 },
            "unguided": m, "guided": m, "exact_loss": loss,
        })
        .to_string()
    }

    #[test]
    fn html_cells_equal_the_results_and_arm_names_are_escaped() {
        let out = std::env::temp_dir().join(format!("curadiff-report-html-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).unwrap();
        let arms = vec!["a<b&c>".to_string(), "plain".to_string()];
        let lines = [
            toy_point("a<b&c>", 0, "nimg", 512, 0.0300, 0.60),
            toy_point("a<b&c>", 1, "nimg", 512, 0.0500, 0.70),
            toy_point("a<b&c>", 0, "final", 1024, 0.0200, 0.80),
            toy_point("a<b&c>", 1, "final", 1024, 0.0400, 0.90),
            toy_point("plain", 0, "nimg", 512, 0.0700, 0.50),
            toy_point("plain", 0, "final", 1024, 0.0600, 0.55),
        ];
        std::fs::write(out.join("results.jsonl"), lines.join("\n")).unwrap();
        let targets = Targets {
            exact_loss: Some(0.045),
            ..Targets::default()
        };
        write_report(&out, &arms, &targets).unwrap();
        let html = std::fs::read_to_string(out.join("report.html")).unwrap();
        let md = std::fs::read_to_string(out.join("report.md")).unwrap();
        // The final exact loss of the escaped arm: mean 0.03, sample std 0.01414; its
        // classification 0.85 ± 0.0707; `plain` has one seed.
        let esc = "<td>a&lt;b&amp;c&gt;</td>";
        let row = |name: &str, point: &str, seeds: usize, cells: &[&str]| {
            let mut r =
                format!("<tr>{name}<td class=\"n\">{point}</td><td class=\"n\">{seeds}</td>");
            for c in cells {
                r.push_str(&format!("<td class=\"n\">{c}</td>"));
            }
            r
        };
        let fin = row(
            esc,
            "end",
            2,
            &["0.0300 ± 0.0141", "0.500 ± 0.000", "0.850 ± 0.071"],
        );
        assert!(html.contains(&fin), "{fin} missing from\n{html}");
        let plain = row("<td>plain</td>", "512", 1, &["0.0700 ± 0.0000"]);
        assert!(html.contains(&plain), "{plain}");
        assert!(
            md.contains("| a<b&c> | end | 2 | 0.0300 ± 0.0141 | 0.500 ± 0.000 | 0.850 ± 0.071 |")
        );
        // The target table: the escaped arm reaches 0.045 with both seeds.
        assert!(html.contains("<td>exact loss ≤ 0.045</td>"), "{html}");
        // Nowhere, in tables, legends or provenance, is the name left unescaped.
        assert!(!html.contains("a<b"));
        assert!(
            html.contains("a&lt;b&amp;c&gt;</text>") || html.contains("a&lt;b&amp;c&gt;\n</text>")
        );
        assert_eq!(
            html.matches("<table").count(),
            5,
            "4 tables and the provenance"
        );
        assert_eq!(html.matches("<svg").count(), 3);
        let _ = std::fs::remove_dir_all(&out);
    }

    #[test]
    fn first_reach_interpolates_in_log_scale() {
        // Loss 0.04 at 1e6 and 0.02 at 4e6: the target 0.03 is half-way in the metric, so
        // half-way in log images: √(1e6·4e6) = 2e6.
        let pts = [(1e6, 0.04), (4e6, 0.02), (8e6, 0.01)];
        let n = first_reach(&pts, 0.03, false).unwrap();
        assert!((n - 2e6).abs() < 1e-6, "{n}");
        // Reached at the first point; never reached; higher-is-better.
        assert_eq!(first_reach(&pts, 0.05, false), Some(1e6));
        assert_eq!(first_reach(&pts, 0.001, false), None);
        let acc = [(1.0, 0.5), (2.0, 0.7), (4.0, 0.9)];
        assert_eq!(first_reach(&acc, 0.7, true), Some(2.0));
    }
}
