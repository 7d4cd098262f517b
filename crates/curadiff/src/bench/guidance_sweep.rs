//! Tuned autoguidance (EDM2's post-hoc EMA meets Karras et al. 2024b, "Guiding a Diffusion
//! Model with a Bad Version of Itself", Sec. 5): a sweep over the main network's EMA width,
//! the guide's EMA width and the guidance weight, each point's weights reconstructed post hoc
//! ([`crate::train::phema`]), beside unguided sampling and class-free guidance at each main
//! EMA width. Every point is scored on the project's feature classifier against the
//! Fashion-MNIST test split; `results.jsonl` gets one line per point (a re-run skips the points
//! already there) and `results.md` the table sorted by FD.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::images::{self, ImageSet, Split};
use crate::error::{Error, Result};
use crate::eval::classifier::{self, Classifier};
use crate::imagejob::{self, SampleRequest};
use crate::train::phema::reconstruct::{check, Target};

/// What to sweep.
#[derive(Debug, Clone)]
pub struct SweepConfig {
    pub main: PathBuf,
    pub guide: PathBuf,
    /// σ_rel of the main network's EMA.
    pub main_sigma_rels: Vec<f64>,
    /// σ_rel of the guide's EMA.
    pub guide_sigma_rels: Vec<f64>,
    /// Autoguidance weights.
    pub w: Vec<f64>,
    /// Class-free guidance weights (each at every main σ_rel); empty: none.
    pub cfg: Vec<f64>,
    /// Samples per point (classes in turn).
    pub n: usize,
    pub seed: u64,
    pub out: PathBuf,
    /// Feature classifier (default: [`classifier::default_path`]).
    pub classifier: Option<PathBuf>,
    /// Fashion-MNIST folder (default: [`images::FASHION_MNIST_DIR`]).
    pub data: Option<PathBuf>,
}

/// How a point samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Guidance {
    Unguided,
    Auto,
    Cfg,
}

/// One evaluated point: a line of `results.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub guidance: Guidance,
    pub main_sigma_rel: f64,
    /// The guide's σ_rel (autoguidance only).
    pub guide_sigma_rel: Option<f64>,
    /// The guidance weight (none when unguided).
    pub w: Option<f64>,
    pub n: usize,
    pub seed: u64,
    pub fd: f64,
    pub kid: f64,
    pub precision: f64,
    pub recall: f64,
    pub class_accuracy: Option<f64>,
    pub sample_seconds: f64,
}

impl Point {
    /// The point's identity (what a re-run compares to skip it).
    fn key(&self) -> String {
        key(
            self.guidance,
            self.main_sigma_rel,
            self.guide_sigma_rel,
            self.w,
            self.n,
            self.seed,
        )
    }

    /// "auto w=1.5 main 0.075 guide 0.050" etc., for tables and messages.
    pub fn label(&self) -> String {
        let w = self.w.map(|w| format!(" w={w}")).unwrap_or_default();
        let g = self
            .guide_sigma_rel
            .map(|g| format!(", guide σ_rel {g}"))
            .unwrap_or_default();
        let kind = match self.guidance {
            Guidance::Unguided => "unguided",
            Guidance::Auto => "autoguidance",
            Guidance::Cfg => "class-free guidance",
        };
        format!("{kind}{w}, main σ_rel {}{g}", self.main_sigma_rel)
    }
}

fn key(g: Guidance, m: f64, gs: Option<f64>, w: Option<f64>, n: usize, seed: u64) -> String {
    format!("{g:?}|{m:.6}|{gs:?}|{w:?}|{n}|{seed}")
}

/// The best points of a sweep.
#[derive(Debug, Clone)]
pub struct Summary {
    pub points: Vec<Point>,
    pub best_auto: Option<Point>,
    pub best_unguided: Option<Point>,
    pub best_cfg: Option<Point>,
    /// Points evaluated by this call (the others were in `results.jsonl`).
    pub evaluated: usize,
}

/// The points of `c` to evaluate, in order: unguided and CFG at each main σ_rel, then
/// autoguidance.
fn todo(c: &SweepConfig) -> Vec<(Guidance, f64, Option<f64>, Option<f64>)> {
    let mut v = Vec::new();
    for &m in &c.main_sigma_rels {
        v.push((Guidance::Unguided, m, None, None));
        for &w in &c.cfg {
            v.push((Guidance::Cfg, m, None, Some(w)));
        }
    }
    for &m in &c.main_sigma_rels {
        for &g in &c.guide_sigma_rels {
            for &w in &c.w {
                v.push((Guidance::Auto, m, Some(g), Some(w)));
            }
        }
    }
    v
}

fn validate(c: &SweepConfig) -> Result<()> {
    let invalid = |field: &str, why: String| Error::InvalidValue {
        field: field.into(),
        why,
    };
    if c.main_sigma_rels.is_empty() {
        return Err(invalid("main_sigma_rels", "give at least one σ_rel".into()));
    }
    if c.n == 0 {
        return Err(invalid("n", "at least 1 sample per point".into()));
    }
    for &w in c.w.iter().chain(&c.cfg) {
        if !w.is_finite() {
            return Err(invalid(
                "w",
                format!("guidance weights must be finite, got {w}"),
            ));
        }
    }
    if !c.w.is_empty() && c.guide_sigma_rels.is_empty() {
        return Err(invalid(
            "guide_sigma_rels",
            "autoguidance weights need at least one guide σ_rel".into(),
        ));
    }
    // Every σ_rel must be reconstructable before hours of sampling start.
    for &s in &c.main_sigma_rels {
        check(&c.main, &Target::at(s))?;
    }
    if !c.w.is_empty() {
        for &s in &c.guide_sigma_rels {
            check(&c.guide, &Target::at(s))?;
        }
    }
    Ok(())
}

/// The points already in `path` (lines that do not parse are skipped).
pub fn read_results(path: &Path) -> Result<Vec<Point>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

fn append(path: &Path, p: &Point) -> Result<()> {
    let mut line = serde_json::to_string(p).map_err(|e| Error::Model(e.to_string()))?;
    line.push('\n');
    crate::fsutil::append_lines(path, &line)
}

fn load_reference(c: &SweepConfig) -> Result<(Classifier, ImageSet)> {
    let path = c
        .classifier
        .clone()
        .unwrap_or_else(classifier::default_path);
    if !path.exists() {
        return Err(Error::Config(format!(
            "the sweep needs the feature classifier, and there is none at {}; train it once \
             with `curadiff classifier` (about 4 minutes), or pass its path",
            path.display()
        )));
    }
    let dir = c
        .data
        .clone()
        .unwrap_or_else(|| PathBuf::from(images::FASHION_MNIST_DIR));
    Ok((
        Classifier::load(&path)?,
        images::load_fashion_mnist(&dir, Split::Test)?,
    ))
}

/// Runs the sweep (resuming from `c.out/results.jsonl`), writes `c.out/results.md`, and
/// returns every point with the best of each kind; `progress` hears of each point.
pub fn run(c: &SweepConfig, progress: &mut dyn FnMut(&str)) -> Result<Summary> {
    validate(c)?;
    crate::fsutil::create_dir(&c.out)?;
    let results = c.out.join("results.jsonl");
    let mut points = read_results(&results)?;
    let pending: Vec<_> = todo(c)
        .into_iter()
        .filter(|&(g, m, gs, w)| {
            let k = key(g, m, gs, w, c.n, c.seed);
            !points.iter().any(|p| p.key() == k)
        })
        .collect();
    let mut evaluated = 0;
    if !pending.is_empty() {
        let (clf, reference) = load_reference(c)?;
        let total = pending.len();
        for (i, (g, m, gs, w)) in pending.into_iter().enumerate() {
            let req = SampleRequest {
                run: c.main.clone(),
                snapshot: None,
                guide: match g {
                    Guidance::Auto => w.map(|w| (c.guide.clone(), w)),
                    _ => None,
                },
                cfg: if g == Guidance::Cfg { w } else { None },
                class: None,
                unconditional: false,
                n: c.n,
                seed: c.seed,
                raw: false,
                phema: Some(Target::at(m)),
                guide_phema: gs.map(Target::at),
            };
            let (metrics, _, seconds) = imagejob::score(&req, &clf, &reference)?;
            let p = Point {
                guidance: g,
                main_sigma_rel: m,
                guide_sigma_rel: gs,
                w,
                n: c.n,
                seed: c.seed,
                fd: metrics.fd,
                kid: metrics.kid_mean,
                precision: metrics.precision,
                recall: metrics.recall,
                class_accuracy: metrics.class_accuracy,
                sample_seconds: seconds,
            };
            append(&results, &p)?;
            progress(&format!(
                "[{}/{total}] {}: FD {:.2} ({seconds:.0} s)",
                i + 1,
                p.label(),
                p.fd
            ));
            points.push(p);
            evaluated += 1;
        }
    }
    // Only this sweep's points (results.jsonl may hold others, e.g. another n).
    let wanted: Vec<String> = todo(c)
        .into_iter()
        .map(|(g, m, gs, w)| key(g, m, gs, w, c.n, c.seed))
        .collect();
    let mut mine: Vec<Point> = points
        .into_iter()
        .filter(|p| wanted.contains(&p.key()))
        .collect();
    mine.sort_by(|a, b| a.fd.total_cmp(&b.fd));
    crate::fsutil::write_atomic(&c.out.join("results.md"), table(&mine).as_bytes())?;
    let best = |g: Guidance| mine.iter().find(|p| p.guidance == g).cloned();
    Ok(Summary {
        best_auto: best(Guidance::Auto),
        best_unguided: best(Guidance::Unguided),
        best_cfg: best(Guidance::Cfg),
        points: mine,
        evaluated,
    })
}

/// The Markdown table of `points` (in the given order).
pub fn table(points: &[Point]) -> String {
    let mut s = String::from(
        "| guidance | main σ_rel | guide σ_rel | w | FD | KID | precision | recall | class acc. |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    let opt = |v: Option<f64>| v.map(|v| format!("{v}")).unwrap_or_else(|| "–".into());
    for p in points {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {:.2} | {:.4} | {:.3} | {:.3} | {} |\n",
            match p.guidance {
                Guidance::Unguided => "none",
                Guidance::Auto => "auto",
                Guidance::Cfg => "cfg",
            },
            p.main_sigma_rel,
            opt(p.guide_sigma_rel),
            opt(p.w),
            p.fd,
            p.kid,
            p.precision,
            p.recall,
            p.class_accuracy
                .map(|a| format!("{a:.3}"))
                .unwrap_or_else(|| "–".into()),
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SweepConfig {
        SweepConfig {
            main: "m".into(),
            guide: "g".into(),
            main_sigma_rels: vec![0.05, 0.1],
            guide_sigma_rels: vec![0.05],
            w: vec![1.5, 2.0],
            cfg: vec![2.0],
            n: 10,
            seed: 7,
            out: "o".into(),
            classifier: None,
            data: None,
        }
    }

    #[test]
    fn the_sweep_covers_every_combination_once() {
        // 2 main σ_rels × (unguided + 1 CFG weight) + 2 × 1 guide σ_rel × 2 weights = 8.
        let t = todo(&cfg());
        assert_eq!(t.len(), 8);
        let keys: std::collections::BTreeSet<String> = t
            .iter()
            .map(|&(g, m, gs, w)| key(g, m, gs, w, 10, 7))
            .collect();
        assert_eq!(keys.len(), 8);
        assert_eq!(t.iter().filter(|p| p.0 == Guidance::Auto).count(), 4);
    }

    #[test]
    fn results_round_trip_and_sort_by_fd_in_the_table() {
        let p = |g, fd| Point {
            guidance: g,
            main_sigma_rel: 0.05,
            guide_sigma_rel: (g == Guidance::Auto).then_some(0.1),
            w: (g != Guidance::Unguided).then_some(2.0),
            n: 10,
            seed: 7,
            fd,
            kid: 0.0,
            precision: 0.5,
            recall: 0.5,
            class_accuracy: Some(0.9),
            sample_seconds: 1.0,
        };
        let d = std::env::temp_dir().join(format!("curadiff-sweep-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let f = d.join("results.jsonl");
        let pts = [p(Guidance::Auto, 3.0), p(Guidance::Unguided, 9.0)];
        for q in &pts {
            append(&f, q).unwrap();
        }
        assert_eq!(read_results(&f).unwrap(), pts);
        let mut sorted = pts.to_vec();
        sorted.sort_by(|a, b| a.fd.total_cmp(&b.fd));
        let t = table(&sorted);
        let auto = t.find("| auto").unwrap();
        assert!(auto < t.find("| none").unwrap(), "{t}");
        assert!(t.contains("| 3.00 |"));
    }
}
