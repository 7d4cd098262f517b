//! Grids over several machines, and the results files of a grid.
//!
//! **Cells** are numbered in the canonical order: seeds in the grid file's order, and for
//! each seed the arms in the grid file's order (cell `k` is seed `k / arms`, arm
//! `k % arms`, counting from 0). **Shard `i/N`** (1-based: `1/N` … `N/N`, as Slurm's
//! `$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT` of `--array=1-N`) runs the cells with
//! `k % N == i - 1`, and appends to its own file `results.shard-i-of-N.jsonl`, so shards on
//! different nodes sharing one folder never write the same file. An unsharded run appends
//! to `results.jsonl`.
//!
//! A results file holds one line per (cell, budget point); a cell's lines end with its
//! `final` point and are written with one `write` call. A cell is **complete** when a file
//! holds its lines up to `final`. On start, a run reads its own file: a last line without
//! its newline (a write torn by a kill) is dropped with a warning, as are the lines of
//! cells that did not reach `final` and the failed cells' lines, and those cells run again
//! (their training resumes from its checkpoints). Cells complete in any other results file
//! of the folder are skipped too.
//!
//! [`merge`] (`bench --report`) reads every results file of the folder and writes
//! `results.jsonl` with each complete cell once (from the first file holding it:
//! `results.jsonl`, then the shard files by N and i), in canonical order, then the failed
//! cells; it names the cells still missing.
//!
//! The guide of a seed (toy grids) is trained in a private folder of the run
//! (`guides/seed-S.partial-TAG`) and renamed to `guides/seed-S` when done; shards that
//! need the same guide may each train it (the result is the same, by determinism), and the
//! first rename wins.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::grid::{Grid, ResultLine};
use crate::error::{Error, Result};
use crate::train::config::RunConfig;
use crate::train::run::Quiet;

/// One shard of a grid: `index` of `count`, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// Parses `i/N` with 1 ≤ i ≤ N.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::Config(format!(
                "--shard '{s}': {why}; write i/N with 1 ≤ i ≤ N, e.g. --shard 1/4 … --shard 4/4"
            ))
        };
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| bad("expected two whole numbers separated by '/'"))?;
        let num = |t: &str| t.trim().parse::<usize>().ok();
        let (Some(index), Some(count)) = (num(i), num(n)) else {
            return Err(bad("expected two whole numbers separated by '/'"));
        };
        if count == 0 {
            return Err(bad("the number of shards N must be at least 1"));
        }
        if index == 0 || index > count {
            return Err(bad(&format!(
                "the shard index must be between 1 and {count}"
            )));
        }
        Ok(Self { index, count })
    }

    /// Whether cell `k` (canonical order, from 0) belongs to this shard.
    pub fn owns(&self, k: usize) -> bool {
        k % self.count == self.index - 1
    }

    /// The results file of this shard.
    pub fn file_name(&self) -> String {
        format!("results.shard-{}-of-{}.jsonl", self.index, self.count)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// A cell: (arm, seed).
pub type Cell = (String, u64);

/// The cells of a grid in canonical order.
pub fn cells(grid: &Grid) -> Vec<Cell> {
    grid.seeds
        .iter()
        .flat_map(|&s| grid.arms.iter().map(move |a| (a.name.clone(), s)))
        .collect()
}

/// The results file a run appends to: `results.jsonl`, or the shard's own file.
pub fn results_file(out: &Path, shard: Option<&Shard>) -> PathBuf {
    match shard {
        Some(s) => out.join(s.file_name()),
        None => out.join("results.jsonl"),
    }
}

/// A results file read line by line.
#[derive(Debug, Default)]
struct Parsed {
    /// Complete cells: their lines (text without the newline), in file order.
    complete: Vec<(Cell, Vec<String>)>,
    /// Failed cells (not complete in this file) and their line.
    failed: Vec<(Cell, String)>,
    /// Lines dropped: a torn last line, cells cut before `final`, repeated cells.
    dropped: Vec<String>,
}

/// A point's (kind, budget point bits); `None` for a failed cell's line.
type PointKey = Option<(String, u64)>;

fn cell_of(line: &ResultLine) -> (Cell, PointKey) {
    match line {
        ResultLine::Point(p) => (
            (p.arm.clone(), p.seed),
            Some((p.kind.clone(), p.point.to_bits())),
        ),
        ResultLine::Failed { arm, seed, .. } => ((arm.clone(), *seed), None),
    }
}

/// Reads a results file (a missing file is empty). A newline-terminated line that is not a
/// result is an error naming the file and line; a last line without its newline is torn.
fn parse(path: &Path) -> Result<Parsed> {
    let text = match std::fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(Error::Io {
                path: path.to_path_buf(),
                source: e,
            })
        }
    };
    let mut out = Parsed::default();
    let mut body = text.as_str();
    if !body.is_empty() && !body.ends_with('\n') {
        let cut = body.rfind('\n').map_or(0, |i| i + 1);
        out.dropped.push(format!(
            "torn last line (no newline; {} bytes)",
            body.len() - cut
        ));
        body = &body[..cut];
    }
    // Lines of each cell since its last `final` (or failure), in order.
    let mut pending: BTreeMap<Cell, Vec<(PointKey, String)>> = BTreeMap::new();
    let mut done: BTreeSet<Cell> = BTreeSet::new();
    for (i, line) in body.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed: ResultLine = serde_json::from_str(line).map_err(|e| Error::BadFile {
            path: path.to_path_buf(),
            why: format!(
                "line {} is not a grid result ({e}); remove that line (its cell then runs \
                 again) or the file",
                i + 1
            ),
        })?;
        let (cell, key) = cell_of(&parsed);
        let buf = pending.entry(cell.clone()).or_default();
        match key {
            None => {
                buf.clear();
                if !done.contains(&cell) {
                    out.failed.retain(|(c, _)| *c != cell);
                    out.failed.push((cell, line.to_string()));
                }
            }
            Some(key) => {
                // A point seen again: the cell was started over; keep the newer lines.
                if buf.iter().any(|(k, _)| k.as_ref() == Some(&key)) {
                    out.dropped
                        .extend(buf.drain(..).map(|_| format!("repeated line of {cell:?}")));
                }
                let is_final = key.0 == "final";
                buf.push((Some(key), line.to_string()));
                if is_final {
                    let lines: Vec<String> = buf.drain(..).map(|(_, l)| l).collect();
                    if done.insert(cell.clone()) {
                        out.failed.retain(|(c, _)| *c != cell);
                        out.complete.push((cell, lines));
                    } else {
                        out.dropped
                            .push(format!("{cell:?} again ({} lines)", lines.len()));
                    }
                }
            }
        }
    }
    for (cell, buf) in pending {
        if !buf.is_empty() {
            out.dropped.push(format!(
                "{} line(s) of arm {} seed {} cut before its final point",
                buf.len(),
                cell.0,
                cell.1
            ));
        }
    }
    Ok(out)
}

/// The results files in `out`: `results.jsonl` first, then the shard files by (N, i).
pub fn result_files(out: &Path) -> Result<Vec<PathBuf>> {
    let mut shards: Vec<((usize, usize), PathBuf)> = Vec::new();
    let rd = match std::fs::read_dir(out) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::Io {
                path: out.to_path_buf(),
                source: e,
            })
        }
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(mid) = name
            .strip_prefix("results.shard-")
            .and_then(|r| r.strip_suffix(".jsonl"))
        else {
            continue;
        };
        if let Some((i, n)) = mid.split_once("-of-") {
            if let Ok(s) = Shard::parse(&format!("{i}/{n}")) {
                shards.push(((s.count, s.index), e.path()));
            }
        }
    }
    shards.sort();
    let main = out.join("results.jsonl");
    let mut files: Vec<PathBuf> = main.exists().then_some(main).into_iter().collect();
    files.extend(shards.into_iter().map(|(_, p)| p));
    Ok(files)
}

/// Prepares a run's own results file for appending: drops a torn last line, the lines of
/// cells cut before `final` and of failed cells (those cells run again), rewriting the file
/// when anything was dropped. Returns the cells complete in it or in any other results
/// file of `out` (those are read only; their torn or cut lines are ignored).
pub fn prepare(
    out: &Path,
    shard: Option<&Shard>,
    note: &mut dyn FnMut(&str),
) -> Result<BTreeSet<Cell>> {
    let own = results_file(out, shard);
    let p = parse(&own)?;
    if !p.dropped.is_empty() || !p.failed.is_empty() {
        for d in &p.dropped {
            note(&format!(
                "warning: {}: dropping {d}; that cell runs again",
                own.display()
            ));
        }
        for (c, _) in &p.failed {
            note(&format!(
                "{}: arm {} seed {} failed before; it runs again",
                own.display(),
                c.0,
                c.1
            ));
        }
        let mut text = String::new();
        for l in p.complete.iter().flat_map(|(_, ls)| ls) {
            text.push_str(l);
            text.push('\n');
        }
        crate::fsutil::write_atomic(&own, text.as_bytes())?;
    }
    let mut done: BTreeSet<Cell> = p.complete.into_iter().map(|(c, _)| c).collect();
    for f in result_files(out)? {
        if f == own {
            continue;
        }
        match parse(&f) {
            Ok(o) => done.extend(o.complete.into_iter().map(|(c, _)| c)),
            Err(e) => note(&format!("warning: ignoring {}: {e}", f.display())),
        }
    }
    Ok(done)
}

/// Appends one cell's lines to `path` with one `write`, then syncs.
pub fn append_cell(path: &Path, lines: &[ResultLine]) -> Result<()> {
    let mut text = String::new();
    for l in lines {
        text.push_str(&serde_json::to_string(l).map_err(|e| Error::Model(e.to_string()))?);
        text.push('\n');
    }
    crate::fsutil::append_lines(path, &text)
}

/// What [`merge`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// The results files read, in order of precedence.
    pub files: Vec<PathBuf>,
    /// Cells of the grid with results.
    pub complete: usize,
    /// Cells of the grid that failed (and have no results).
    pub failed: Vec<Cell>,
    /// Cells of the grid with neither results nor a failure.
    pub missing: Vec<Cell>,
    /// Complete cells found in more than one file (kept once).
    pub duplicates: usize,
    /// Complete cells that are not in the grid (kept after the grid's cells).
    pub extra: Vec<Cell>,
}

/// Merges every results file of `out` into `out/results.jsonl` (complete cells once, in
/// canonical order; then failed cells; then cells not in the grid) and says what is
/// missing. Torn or cut lines of the inputs (e.g. a shard still running) are left out.
pub fn merge(grid: &Grid, out: &Path) -> Result<Merged> {
    let files = result_files(out)?;
    let mut complete: BTreeMap<Cell, Vec<String>> = BTreeMap::new();
    let mut failed: BTreeMap<Cell, String> = BTreeMap::new();
    let mut order: Vec<Cell> = Vec::new();
    let mut duplicates = 0;
    for f in &files {
        let p = parse(f)?;
        for (c, lines) in p.complete {
            match complete.entry(c) {
                std::collections::btree_map::Entry::Occupied(_) => duplicates += 1,
                std::collections::btree_map::Entry::Vacant(v) => {
                    order.push(v.key().clone());
                    v.insert(lines);
                }
            }
        }
        for (c, l) in p.failed {
            failed.entry(c).or_insert(l);
        }
    }
    let canonical = cells(grid);
    let in_grid: BTreeSet<&Cell> = canonical.iter().collect();
    let mut text = String::new();
    let mut push = |lines: &[String]| {
        for l in lines {
            text.push_str(l);
            text.push('\n');
        }
    };
    let (mut n_complete, mut n_failed, mut missing) = (0, Vec::new(), Vec::new());
    for c in &canonical {
        if let Some(lines) = complete.get(c) {
            push(lines);
            n_complete += 1;
        } else if !failed.contains_key(c) {
            missing.push(c.clone());
        }
    }
    for c in &canonical {
        if let (None, Some(l)) = (complete.get(c), failed.get(c)) {
            push(std::slice::from_ref(l));
            n_failed.push(c.clone());
        }
    }
    let extra: Vec<Cell> = order.into_iter().filter(|c| !in_grid.contains(c)).collect();
    for c in &extra {
        push(&complete[c]);
    }
    crate::fsutil::create_dir(out)?;
    crate::fsutil::write_atomic(&out.join("results.jsonl"), text.as_bytes())?;
    Ok(Merged {
        files,
        complete: n_complete,
        failed: n_failed,
        missing,
        duplicates,
        extra,
    })
}

/// Trains the guide of a seed into `dir` unless it is there: in a private folder of this
/// run, renamed to `dir` when done (a concurrent shard's finished copy is kept instead). A
/// `dir` from before this scheme (no `guide-done` marker) is resumed in place.
pub fn ensure_guide(dir: &Path, cfg: &RunConfig, tag: &str) -> Result<()> {
    let marker = "guide-done";
    if dir.join(marker).exists() {
        return Ok(());
    }
    if dir.exists() {
        crate::trainjob::train(dir, cfg, &mut Quiet)?;
        return crate::fsutil::write_atomic(&dir.join(marker), b"{}");
    }
    let mut name = dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".partial-{tag}"));
    let tmp = dir.with_file_name(name);
    crate::trainjob::train(&tmp, cfg, &mut Quiet)?;
    crate::fsutil::write_atomic(&tmp.join(marker), b"{}")?;
    if std::fs::rename(&tmp, dir).is_err() && dir.join(marker).exists() {
        // Another shard finished the same guide first.
        return std::fs::remove_dir_all(&tmp).map_err(|e| Error::Io {
            path: tmp.clone(),
            source: e,
        });
    }
    if dir.join(marker).exists() {
        Ok(())
    } else {
        Err(Error::Io {
            path: dir.to_path_buf(),
            source: std::io::Error::other(format!(
                "could not move the finished guide {} there",
                tmp.display()
            )),
        })
    }
}
