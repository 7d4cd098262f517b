//! Classifier grids (`kind = "classifier"` in a grid file, run by `curadiff bench --grid`):
//! DisCL's comparison of curricula ([`crate::curation::curriculum::arm`]) as arms × seeds of
//! classifiers trained on one real pool (a run's or a preset's `data.*`: the long-tailed cut)
//! and, for the arms that need it, one spectrum written by `curadiff synth`. Each cell appends
//! one JSON line `{arm, seed, result}` to `DIR/results.jsonl` (or `{arm, seed, error}` when it
//! failed: it runs again next time); cells already complete are skipped, so a killed grid
//! resumes where it stopped. The report (`DIR/report.md`, also printed) gives per arm the mean
//! ± std over seeds of the balanced test accuracy overall and per shot group, per class, and
//! the seconds of training and of curation (synthesis and the choice of hard examples from the
//! spectrum's sidecar, the adaptive rule's evaluations).
//!
//! ```toml
//! kind = "classifier"
//! preset = "fmnist-lt-hard"          # or run = "runs/lt-gen"
//! spectrum = "runs/lt-spectrum"
//! seeds = [0, 1, 2]
//! [defaults]                         # fields of every arm (ArmConfig)
//! steps = 600
//! [[arm]]
//! name = "fixed"
//! arm = "fixed"
//! ```

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::curation::curriculum::arm::{run_arm, ArmConfig, ArmResult};
use crate::data::images::ImageSet;
use crate::error::{Error, Result};
use crate::train::config::RunConfig;
use crate::train::image_data;
use crate::train::presets::preset;
use crate::train::run::RunDir;

/// The value of `kind` that marks a classifier grid.
pub const KIND: &str = "classifier";

/// One arm: a name and its config (the grid's `[defaults]` under the arm's own fields).
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierArm {
    pub name: String,
    pub config: ArmConfig,
}

/// A classifier grid file.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierGrid {
    /// The real pool and test set: a run directory's config, or a preset with overrides.
    pub run: Option<PathBuf>,
    pub preset: Option<String>,
    pub set: Vec<String>,
    /// The spectrum folder (needed when an arm trains on synthetic images).
    pub spectrum: Option<PathBuf>,
    pub seeds: Vec<u64>,
    pub arms: Vec<ClassifierArm>,
}

/// The file as written, before each arm is merged with `[defaults]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrid {
    kind: String,
    #[serde(default)]
    run: Option<PathBuf>,
    #[serde(default)]
    preset: Option<String>,
    #[serde(default)]
    set: Vec<String>,
    #[serde(default)]
    spectrum: Option<PathBuf>,
    seeds: Vec<u64>,
    #[serde(default)]
    defaults: toml::Table,
    #[serde(rename = "arm")]
    arms: Vec<toml::Table>,
}

/// True when the grid file's text declares `kind = "classifier"`.
pub fn is_classifier_grid(text: &str) -> bool {
    toml::from_str::<toml::Table>(text)
        .ok()
        .and_then(|t| t.get("kind").and_then(|k| k.as_str().map(|s| s == KIND)))
        .unwrap_or(false)
}

impl ClassifierGrid {
    /// Parses and checks a classifier grid file's text (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let bad = |why: String| Error::BadFile {
            path: path.to_path_buf(),
            why,
        };
        let raw: RawGrid = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        if raw.kind != KIND {
            return Err(bad(format!(
                "kind = {:?} is not a classifier grid (kind = \"{KIND}\")",
                raw.kind
            )));
        }
        if raw.run.is_some() == raw.preset.is_some() {
            return Err(bad(
                "name the real pool with exactly one of run = \"RUN\" or preset = \"NAME\"".into(),
            ));
        }
        if raw.run.is_some() && !raw.set.is_empty() {
            return Err(bad(
                "set = [...] overrides a preset; a run's config is used as it is".into(),
            ));
        }
        if raw.seeds.is_empty() || raw.arms.is_empty() {
            return Err(bad("a grid needs at least one seed and one [[arm]]".into()));
        }
        let mut names = BTreeSet::new();
        let mut arms = Vec::with_capacity(raw.arms.len());
        for (i, t) in raw.arms.into_iter().enumerate() {
            let mut t = t;
            let name = match t.remove("name") {
                Some(toml::Value::String(s)) if !s.is_empty() => s,
                _ => return Err(bad(format!("[[arm]] {} needs a name = \"...\"", i + 1))),
            };
            if !names.insert(name.clone()) {
                return Err(bad(format!("two arms are named {name:?}")));
            }
            let mut merged = raw.defaults.clone();
            merged.extend(t);
            let config: ArmConfig = toml::Value::Table(merged)
                .try_into()
                .map_err(|e| bad(format!("arm {name:?}: {e}")))?;
            config
                .validate()
                .map_err(|e| bad(format!("arm {name:?}: {e}")))?;
            if config.arm.needs_spectrum() && raw.spectrum.is_none() {
                return Err(bad(format!(
                    "arm {name:?} ({:?}) trains on synthetic images: add spectrum = \"DIR\" \
                     (written by `curadiff synth`)",
                    config.arm
                )));
            }
            arms.push(ClassifierArm { name, config });
        }
        Ok(Self {
            run: raw.run,
            preset: raw.preset,
            set: raw.set,
            spectrum: raw.spectrum,
            seeds: raw.seeds,
            arms,
        })
    }

    /// Reads and parses a grid file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        Self::parse(&text, path)
    }

    /// The config whose `data.*` give the pool and the test set.
    pub fn source_config(&self) -> Result<RunConfig> {
        match (&self.run, &self.preset) {
            (Some(run), _) => RunDir::new(run).read_run_config(),
            (None, Some(p)) => preset(p)?.with_overrides(&self.set),
            (None, None) => Err(Error::Config("the grid names no pool".into())),
        }
    }

    /// The cells in order: seed-major, arms in file order.
    pub fn cells(&self) -> Vec<(usize, u64)> {
        self.seeds
            .iter()
            .flat_map(|&s| (0..self.arms.len()).map(move |a| (a, s)))
            .collect()
    }
}

/// One line of a classifier grid's results file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellLine {
    pub arm: String,
    pub seed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ArmResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The lines of `path` that parse (a torn last line from a kill is skipped); none when the
/// file does not exist.
pub fn read_lines(path: &Path) -> Result<Vec<CellLine>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::Io {
                path: path.to_path_buf(),
                source: e,
            })
        }
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

fn append(path: &Path, line: &CellLine) -> Result<()> {
    let mut text = serde_json::to_string(line).map_err(|e| Error::Model(e.to_string()))?;
    text.push('\n');
    crate::fsutil::append_lines(path, &text)
}

/// Runs every cell of `grid` not yet complete in `out/results.jsonl`, then writes and
/// returns the report. A failed cell is recorded and the rest go on.
pub fn run_classifier_grid(
    grid: &ClassifierGrid,
    out: &Path,
    note: &mut dyn FnMut(&str),
) -> Result<String> {
    crate::fsutil::create_dir(out)?;
    let results = out.join("results.jsonl");
    let done: BTreeSet<(String, u64)> = read_lines(&results)?
        .into_iter()
        .filter(|l| l.result.is_some())
        .map(|l| (l.arm, l.seed))
        .collect();
    let cfg = grid.source_config()?;
    let pool = image_data::pool(&cfg.data, cfg.seed)?;
    let test = image_data::reference_set(&cfg.data, cfg.seed)?;
    let cells = grid.cells();
    let total = cells.len();
    for (k, (a, seed)) in cells.into_iter().enumerate() {
        let arm = &grid.arms[a];
        if done.contains(&(arm.name.clone(), seed)) {
            continue;
        }
        let t = std::time::Instant::now();
        let name = arm.name.clone();
        let r = run_arm(
            seed,
            &arm.config,
            &pool,
            &test,
            grid.spectrum.as_deref(),
            &mut |line| note(&format!("  {name} seed {seed}: {line}")),
        );
        let line = match r {
            Ok(result) => {
                note(&format!(
                    "[{}/{total}] {} seed {seed}: accuracy {:.4}, few-shot {}; {:.1} s",
                    k + 1,
                    arm.name,
                    result.score.overall,
                    result
                        .score
                        .few
                        .map_or("—".to_string(), |f| format!("{f:.4}")),
                    t.elapsed().as_secs_f64()
                ));
                CellLine {
                    arm: arm.name.clone(),
                    seed,
                    result: Some(result),
                    error: None,
                }
            }
            Err(e) => {
                note(&format!(
                    "[{}/{total}] {} seed {seed} failed: {e}",
                    k + 1,
                    arm.name
                ));
                CellLine {
                    arm: arm.name.clone(),
                    seed,
                    result: None,
                    error: Some(e.to_string()),
                }
            }
        };
        append(&results, &line)?;
    }
    write_report(grid, out, &pool)
}

/// Writes `out/report.md` from `out/results.jsonl` (`pool`: the grid's real pool, for the
/// class counts) and returns it.
pub fn write_report(grid: &ClassifierGrid, out: &Path, pool: &ImageSet) -> Result<String> {
    let report = report(grid, &read_lines(&out.join("results.jsonl"))?, pool);
    crate::fsutil::write_atomic(&out.join("report.md"), report.as_bytes())?;
    Ok(report)
}

/// The grid's real pool (its class counts label the report).
pub fn pool(grid: &ClassifierGrid) -> Result<ImageSet> {
    let cfg = grid.source_config()?;
    image_data::pool(&cfg.data, cfg.seed)
}

fn mean_std(v: &[f64]) -> String {
    match v.len() {
        0 => "—".into(),
        1 => format!("{:.3}", v[0]),
        n => {
            let m = v.iter().sum::<f64>() / n as f64;
            let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64;
            format!("{m:.3} ± {:.3}", var.sqrt())
        }
    }
}

/// The Markdown report of the complete cells in `lines` (a cell's last complete line counts).
pub fn report(grid: &ClassifierGrid, lines: &[CellLine], pool: &ImageSet) -> String {
    let mut by_arm: Vec<Vec<&ArmResult>> = vec![Vec::new(); grid.arms.len()];
    for (i, arm) in grid.arms.iter().enumerate() {
        let mut seen = BTreeSet::new();
        for l in lines.iter().rev() {
            if let Some(r) = &l.result {
                if l.arm == arm.name && grid.seeds.contains(&l.seed) && seen.insert(l.seed) {
                    by_arm[i].push(r);
                }
            }
        }
        by_arm[i].sort_by_key(|r| r.seed);
    }
    let counts = pool.class_counts();
    let mut s = String::new();
    s.push_str(&format!(
        "# Classifier grid: {} arms × {} seeds\n\nBalanced test accuracy (mean ± std over \
         seeds); shot groups by the real pool's class counts {counts:?}.\n\n",
        grid.arms.len(),
        grid.seeds.len()
    ));
    s.push_str(
        "| arm | seeds | overall | many | medium | few | train s | curation s |\n\
         |---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for (arm, rs) in grid.arms.iter().zip(&by_arm) {
        let col = |f: &dyn Fn(&ArmResult) -> Option<f64>| {
            mean_std(&rs.iter().filter_map(|r| f(r)).collect::<Vec<_>>())
        };
        let seeds: Vec<String> = rs.iter().map(|r| r.seed.to_string()).collect();
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            arm.name,
            seeds.join(","),
            col(&|r| Some(r.score.overall)),
            col(&|r| r.score.many),
            col(&|r| r.score.medium),
            col(&|r| r.score.few),
            col(&|r| Some(r.train_seconds)),
            col(&|r| Some(r.curation_seconds)),
        ));
    }
    s.push_str("\nPer class (mean over seeds; the pool's count in brackets):\n\n| arm |");
    for (c, n) in counts.iter().enumerate() {
        s.push_str(&format!(" {c} ({n}) |"));
    }
    s.push_str("\n|---|");
    s.push_str(&"---:|".repeat(counts.len()));
    s.push('\n');
    for (arm, rs) in grid.arms.iter().zip(&by_arm) {
        s.push_str(&format!("| {} |", arm.name));
        for c in 0..counts.len() {
            let v: Vec<f64> = rs
                .iter()
                .filter_map(|r| r.score.per_class.get(c).copied())
                .collect();
            if v.is_empty() {
                s.push_str(" — |");
            } else {
                s.push_str(&format!(" {:.3} |", v.iter().sum::<f64>() / v.len() as f64));
            }
        }
        s.push('\n');
    }
    let complete: BTreeSet<(&str, u64)> = lines
        .iter()
        .filter(|l| l.result.is_some())
        .map(|l| (l.arm.as_str(), l.seed))
        .collect();
    let failed: BTreeSet<String> = lines
        .iter()
        .filter(|l| l.result.is_none() && !complete.contains(&(l.arm.as_str(), l.seed)))
        .map(|l| format!("{} seed {}", l.arm, l.seed))
        .collect();
    if !failed.is_empty() {
        s.push_str(&format!(
            "\nFailed (run again by the next `bench --grid`): {}\n",
            failed.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::curation::curriculum::arm::ArmKind;
    use std::io::Write;

    const GRID: &str = r#"
kind = "classifier"
preset = "fmnist-lt-hard"
spectrum = "runs/spec"
seeds = [0, 1]
[defaults]
steps = 60
final_steps = 10
[[arm]]
name = "real"
arm = "real"
[[arm]]
name = "fixed-0.5"
arm = "fixed"
lambdas = [0.5]
steps = 90
"#;

    #[test]
    fn arms_take_the_defaults_under_their_own_fields_and_bad_files_are_named() {
        assert!(is_classifier_grid(GRID));
        assert!(!is_classifier_grid("seeds = [0]\n"));
        let p = Path::new("g.toml");
        let g = ClassifierGrid::parse(GRID, p).unwrap();
        assert_eq!(g.arms.len(), 2);
        assert_eq!(g.arms[0].config.arm, ArmKind::Real);
        assert_eq!(
            (g.arms[0].config.steps, g.arms[0].config.final_steps),
            (60, 10)
        );
        assert_eq!(g.arms[1].config.steps, 90);
        assert_eq!(g.arms[1].config.lambdas, [0.5]);
        assert_eq!(g.arms[1].config.batch, ArmConfig::default().batch);
        assert_eq!(g.cells(), [(0, 0), (1, 0), (0, 1), (1, 1)]);
        let bad = |text: &str| ClassifierGrid::parse(text, p).unwrap_err().to_string();
        let e = bad(&GRID.replace("lambdas = [0.5]", "lambda = [0.5]"));
        assert!(e.contains("fixed-0.5") && e.contains("lambda"), "{e}");
        let e = bad(&GRID.replace("spectrum = \"runs/spec\"\n", ""));
        assert!(e.contains("spectrum = "), "{e}");
        let e = bad(&GRID.replace(
            "preset = \"fmnist-lt-hard\"",
            "run = \"r\"\nset = [\"seed=1\"]",
        ));
        assert!(e.contains("set = "), "{e}");
        let e = bad(&GRID.replace("preset = \"fmnist-lt-hard\"", ""));
        assert!(e.contains("exactly one of"), "{e}");
        let e = bad(&GRID.replace("name = \"fixed-0.5\"", "name = \"real\""));
        assert!(e.contains("two arms"), "{e}");
        let e = bad(&GRID.replace("steps = 90", "steps = 5"));
        assert!(e.contains("final_steps"), "{e}");
        assert!(e.contains("g.toml"), "{e}");
        // The committed grid parses: 8 arms, each single-λ arm at its one λ.
        let text = include_str!("../../../../benches/fmnist-lt-discl.toml");
        assert!(is_classifier_grid(text));
        let g = ClassifierGrid::parse(text, p).unwrap();
        assert_eq!((g.arms.len(), g.seeds.len()), (8, 3));
        assert!(g.arms.iter().all(|a| a.config.steps == 600));
        assert_eq!(g.arms[6].config.lambdas, [0.5]);
        let label = include_str!("../../../../benches/fmnist-lt-discl-label.toml");
        let l = ClassifierGrid::parse(label, p).unwrap();
        assert_eq!(l.arms, g.arms);
        assert_eq!(l.run.as_deref(), Some(Path::new("runs/label/lt-gen")));
    }

    #[test]
    fn a_grid_runs_its_cells_once_resumes_and_reports_means() {
        use crate::data::images::tests::fixture_dir;
        let dir = std::env::temp_dir().join(format!("curadiff-cgrid-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // The committed fixture as the pool: a preset pointed at it, without the LT cut.
        let fx = fixture_dir();
        let text = format!(
            "kind = \"classifier\"\npreset = \"fmnist\"\nset = [\"data.path={}\"]\n\
             seeds = [0, 1]\n[defaults]\nsteps = 4\nbatch = 16\n\
             [[arm]]\nname = \"real\"\narm = \"real\"\n\
             [[arm]]\nname = \"balanced\"\narm = \"balanced\"\n",
            fx.display()
        );
        let g = ClassifierGrid::parse(&text, Path::new("t.toml")).unwrap();
        let out = dir.join("out");
        let mut notes = Vec::new();
        let rep = run_classifier_grid(&g, &out, &mut |m| notes.push(m.to_string())).unwrap();
        let lines = read_lines(&out.join("results.jsonl")).unwrap();
        assert_eq!(lines.len(), 4);
        assert!(lines.iter().all(|l| l.result.is_some()));
        // The report's overall mean of `real` is the mean of its two cells.
        let real: Vec<f64> = lines
            .iter()
            .filter(|l| l.arm == "real")
            .map(|l| l.result.as_ref().unwrap().score.overall)
            .collect();
        let m = (real[0] + real[1]) / 2.0;
        assert!(rep.contains(&format!("| real | 0,1 | {m:.3} ± ")), "{rep}");
        // A torn line (a kill mid-write) and a second run: nothing runs again, the torn
        // line is skipped and the next append starts a fresh line.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(out.join("results.jsonl"))
            .unwrap();
        f.write_all(b"{\"arm\":\"real\",\"se").unwrap();
        notes.clear();
        run_classifier_grid(&g, &out, &mut |m| notes.push(m.to_string())).unwrap();
        assert!(notes.iter().all(|n| !n.starts_with('[')), "{notes:?}");
        assert_eq!(read_lines(&out.join("results.jsonl")).unwrap().len(), 4);
        // A new seed runs only its own cells, after the torn line.
        let g3 = ClassifierGrid {
            seeds: vec![0, 1, 2],
            ..g
        };
        run_classifier_grid(&g3, &out, &mut |_| {}).unwrap();
        let lines = read_lines(&out.join("results.jsonl")).unwrap();
        assert_eq!(lines.len(), 6);
        assert_eq!(lines.iter().filter(|l| l.seed == 2).count(), 2);
        std::fs::remove_dir_all(dir).ok();
    }
}
