//! Shards, merges and resume of grids (`curadiff::bench::shard`): shard specs, the cell
//! assignment, a torn last results line, merging shard files, and a tiny toy grid run as
//! two shards plus a merge against one unsharded run.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use curadiff::bench::grid::{run_grid, Grid, ResultLine};
use curadiff::bench::report;
use curadiff::bench::shard::{append_cell, cells, merge, prepare, Cell, Shard};

fn tmp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("curadiff-shard-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn point(arm: &str, seed: u64, kind: &str, point: f64, loss: f64) -> String {
    serde_json::json!({
        "arm": arm, "seed": seed, "kind": kind, "point": point, "step": 4,
        "nimg": 1024, "nimg_scored": 1024, "seconds": {"train": 0.5},
        "exact_loss": loss,
    })
    .to_string()
}

fn grid(arms: &[&str], seeds: &[u64]) -> Grid {
    let mut text =
        format!("seeds = {seeds:?}\nguidance = 3.0\nsamples = 8\neval_samples = 8\n[guide]\n");
    for a in arms {
        text.push_str(&format!("[[arm]]\nname = \"{a}\"\n"));
    }
    toml::from_str(&text).unwrap()
}

#[test]
fn shard_specs_parse_or_name_the_fix() {
    assert_eq!(Shard::parse("1/2").unwrap(), Shard { index: 1, count: 2 });
    assert_eq!(
        Shard::parse("2/2").unwrap().file_name(),
        "results.shard-2-of-2.jsonl"
    );
    for bad in ["3/2", "0/0", "0/2", "x/2", "1/", "2", "-1/2", "1/2/3"] {
        let e = Shard::parse(bad).unwrap_err().to_string();
        assert!(
            e.contains(&format!("'{bad}'")) && e.contains("1 ≤ i ≤ N"),
            "{e}"
        );
    }
}

#[test]
fn every_cell_belongs_to_exactly_one_shard() {
    for n in 1..=5 {
        for k in 0..23 {
            let owners: Vec<usize> = (1..=n)
                .filter(|&i| Shard { index: i, count: n }.owns(k))
                .collect();
            assert_eq!(owners, vec![k % n + 1]);
        }
    }
    let g = grid(&["a", "b", "c"], &[5, 9]);
    let c = cells(&g);
    assert_eq!(c[0], ("a".to_string(), 5));
    assert_eq!(c[4], ("b".to_string(), 9));
    let s = Shard { index: 2, count: 2 };
    let mine: Vec<&Cell> = c
        .iter()
        .enumerate()
        .filter(|(k, _)| s.owns(*k))
        .map(|(_, c)| c)
        .collect();
    assert_eq!(
        mine,
        [
            &("b".to_string(), 5),
            &("a".to_string(), 9),
            &("c".to_string(), 9)
        ]
    );
}

#[test]
fn a_torn_last_line_is_dropped_with_a_warning_and_its_cell_runs_again() {
    let d = tmp("torn");
    let a = [
        point("a", 0, "nimg", 512.0, 0.25),
        point("a", 0, "final", 1024.0, 0.125),
    ];
    let b1 = point("b", 0, "nimg", 512.0, 0.5);
    let b2 = point("b", 0, "final", 1024.0, 0.375);
    let mut text = format!("{}\n{}\n{b1}\n", a[0], a[1]);
    text.push_str(&b2[..b2.len() / 2]); // killed mid-write
    std::fs::write(d.join("results.jsonl"), &text).unwrap();
    let mut notes = Vec::new();
    let done = prepare(&d, None, &mut |m| notes.push(m.to_string())).unwrap();
    assert_eq!(done, BTreeSet::from([("a".to_string(), 0)]));
    assert!(
        notes
            .iter()
            .any(|n| n.contains("warning") && n.contains("torn last line")),
        "{notes:?}"
    );
    assert!(
        notes.iter().any(|n| n.contains("arm b seed 0 cut before")),
        "{notes:?}"
    );
    let kept = std::fs::read_to_string(d.join("results.jsonl")).unwrap();
    assert_eq!(kept, format!("{}\n{}\n", a[0], a[1]));
    // Appending the re-run cell gives a file every reader accepts.
    let line: ResultLine = serde_json::from_str(&b1).unwrap();
    let last: ResultLine = serde_json::from_str(&b2).unwrap();
    append_cell(&d.join("results.jsonl"), &[line, last]).unwrap();
    let (points, failed) = report::read_results(&d.join("results.jsonl")).unwrap();
    assert_eq!((points.len(), failed.len()), (4, 0));
    assert_eq!(points[3].exact_loss, Some(0.375));
    // A bad line that is not the last one is an error naming the file and the line.
    std::fs::write(
        d.join("results.jsonl"),
        format!("{}\nnot json\n{}\n", a[0], a[1]),
    )
    .unwrap();
    let e = prepare(&d, None, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("results.jsonl") && e.contains("line 2"), "{e}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn merge_keeps_each_cell_once_in_canonical_order_and_names_the_missing() {
    let d = tmp("merge");
    let g = grid(&["a", "b"], &[0, 1]);
    let cell = |arm: &str, seed: u64, loss: f64| {
        format!(
            "{}\n{}\n",
            point(arm, seed, "nimg", 512.0, loss),
            point(arm, seed, "final", 1024.0, loss / 2.0)
        )
    };
    // Shard 2 of 2 owns (b, 0) and (b, 1); (b, 1) failed. Shard 1 owns (a, 0), (a, 1):
    // (a, 1) is still running (cut), and an older unsharded run holds (a, 0) too.
    std::fs::write(
        d.join("results.shard-2-of-2.jsonl"),
        format!(
            "{}{{\"arm\":\"b\",\"seed\":1,\"error\":\"boom\"}}\n",
            cell("b", 0, 0.5)
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("results.shard-1-of-2.jsonl"),
        format!(
            "{}{}\n{{\"arm\":\"a\"",
            cell("a", 0, 0.25),
            point("a", 1, "nimg", 512.0, 0.75)
        ),
    )
    .unwrap();
    std::fs::write(d.join("results.jsonl"), cell("a", 0, 0.25)).unwrap();
    let m = merge(&g, &d).unwrap();
    assert_eq!(m.files.len(), 3);
    assert!(
        m.files[0].ends_with("results.jsonl") && m.files[1].ends_with("results.shard-1-of-2.jsonl")
    );
    assert_eq!((m.complete, m.duplicates), (2, 1));
    assert_eq!(m.failed, vec![("b".to_string(), 1)]);
    assert_eq!(m.missing, vec![("a".to_string(), 1)]);
    let merged = std::fs::read_to_string(d.join("results.jsonl")).unwrap();
    assert_eq!(
        merged,
        format!(
            "{}{}{{\"arm\":\"b\",\"seed\":1,\"error\":\"boom\"}}\n",
            cell("a", 0, 0.25),
            cell("b", 0, 0.5)
        )
    );
    // Merging again changes nothing.
    assert_eq!(merge(&g, &d).unwrap().complete, 2);
    assert_eq!(
        std::fs::read_to_string(d.join("results.jsonl")).unwrap(),
        merged
    );
    let _ = std::fs::remove_dir_all(&d);
}

const TINY: &str = r#"
seeds = [0]
guidance = 3.0
samples = 1000
eval_samples = 500
set = ["model.width=16", "train.batch=256", "train.duration_nimg=10240"]
[guide]
preset = "toy-guide"
set = ["model.width=8", "train.duration_nimg=2560"]
[budgets]
nimg = [1024, 2048]
[[arm]]
name = "full"
[[arm]]
name = "ajest"
set = ["select.method=jest", "select.filter_ratio=0.75", "select.chunks=4", "select.reference={guide}"]
"#;

/// The rows of a results file without the wall-clock fields (`seconds` by phase, the image
/// sampling seconds), which differ between runs.
fn deterministic_rows(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            o.remove("seconds");
            if let Some(im) = o.get_mut("images").and_then(|i| i.as_object_mut()) {
                im.remove("sample_seconds");
            }
            v
        })
        .collect()
}

#[test]
fn two_shards_plus_a_merge_equal_one_run_and_a_torn_line_reruns_its_cell() {
    let d = tmp("grid");
    std::fs::write(d.join("grid.toml"), TINY).unwrap();
    let g = Grid::load(&d.join("grid.toml")).unwrap();
    let quiet = &mut |_: &str| {};

    // One unsharded run.
    let whole = d.join("whole");
    assert_eq!(run_grid(&g, &whole, None, quiet).unwrap(), (2, 0, 0));
    let rows = deterministic_rows(&whole.join("results.jsonl"));
    assert_eq!(rows.len(), 6, "two nimg snapshots plus the end, per cell");
    let kinds: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["arm"].as_str().unwrap(), r["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds[0], ("full", "nimg"));
    assert_eq!(kinds[5], ("ajest", "final"));
    assert_eq!(rows[5]["nimg"], 40 * 64);
    assert_eq!(rows[5]["nimg_scored"], 40 * 256);
    for r in &rows {
        let loss = r["exact_loss"].as_f64().unwrap();
        assert!(loss.is_finite() && loss > 0.0, "{r}");
        assert!(
            r["unguided"]["classification"].as_f64().unwrap() > 0.0,
            "{r}"
        );
    }

    // The same grid as shards 2/2 then 1/2 in one shared folder, each with its own file.
    let split = d.join("split");
    let (s1, s2) = (Shard::parse("1/2").unwrap(), Shard::parse("2/2").unwrap());
    assert_eq!(run_grid(&g, &split, Some(&s2), quiet).unwrap(), (1, 0, 0));
    let own = deterministic_rows(&split.join("results.shard-2-of-2.jsonl"));
    assert!(own.len() == 3 && own.iter().all(|r| r["arm"] == "ajest"));
    assert!(!split.join("results.shard-1-of-2.jsonl").exists());
    assert!(split.join("guides/seed-0/guide-done").is_file());
    let m = merge(&g, &split).unwrap();
    assert_eq!(
        (m.complete, m.missing.clone()),
        (1, vec![("full".to_string(), 0)])
    );
    assert_eq!(run_grid(&g, &split, Some(&s1), quiet).unwrap(), (1, 0, 0));
    let m = merge(&g, &split).unwrap();
    assert_eq!((m.complete, m.failed.len(), m.missing.len()), (2, 0, 0));
    assert_eq!(deterministic_rows(&split.join("results.jsonl")), rows);
    // A shard run again skips its finished cell.
    assert_eq!(run_grid(&g, &split, Some(&s1), quiet).unwrap(), (0, 1, 0));

    // A kill mid-write leaves half a line: it is dropped with a warning, that cell runs
    // again (its training is done, so only the evaluation), and the file ends the same.
    let path = whole.join("results.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let torn = format!(
        "{}\n{}",
        lines[..4].join("\n"),
        &lines[4][..lines[4].len() / 2]
    );
    std::fs::write(&path, torn).unwrap();
    let mut notes = Vec::new();
    let counts = run_grid(&g, &whole, None, &mut |m| notes.push(m.to_string())).unwrap();
    assert_eq!(counts, (1, 1, 0));
    assert!(
        notes.iter().any(|n| n.contains("torn last line")),
        "{notes:?}"
    );
    assert_eq!(deterministic_rows(&path), rows);
    let _ = std::fs::remove_dir_all(&d);
}
