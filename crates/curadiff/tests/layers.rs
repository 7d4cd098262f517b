//! The library's layers, top to bottom (README, "Layers"):
//!
//!   bench → jobs → train → curation / eval / models / plot → diffusion → data → rng, errors
//!
//! A module may use its own layer and any layer below it, never one above. This test reads
//! every `crate::…` path in the library's sources (use lines and inline paths, tests
//! included) and fails on each upward one, naming the file and line.

use std::path::{Path, PathBuf};

/// The layer of a top-level module: larger is higher.
fn rank(module: &str) -> Option<usize> {
    Some(match module {
        "rng" | "error" | "fsutil" | "device" | "Error" | "Result" => 0,
        "data" => 1,
        "diffusion" => 2,
        "curation" | "eval" | "models" | "plot" => 3,
        "train" => 4,
        "jobs" | "toyjob" | "imagejob" | "trainjob" | "synthjob" => 5,
        "bench" => 6,
        _ => return None,
    })
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("the source folder") {
        let p = e.expect("a directory entry").path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules a line refers to through `crate::name`.
fn referenced(line: &str) -> Vec<String> {
    let mut v = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // `curadiff::crate::` never occurs; skip `$crate::` of macros and `{…}` groups.
        let preceded_by_dollar = i > 0 && rest.as_bytes()[i - 1] == b'$';
        if !name.is_empty() && !preceded_by_dollar {
            v.push(name);
        }
        rest = after;
    }
    v
}

/// Every upward reference in the library as "file:line: module → used".
fn violations(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    sources(root, &mut files);
    files.sort();
    let mut bad = Vec::new();
    for f in files {
        let rel = f.strip_prefix(root).expect("under the root");
        let top = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|s| s.trim_end_matches(".rs").to_string())
            .unwrap_or_default();
        let Some(own) = rank(&top) else {
            continue; // lib.rs: lists modules only
        };
        let text = std::fs::read_to_string(&f).expect("a readable source file");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for used in referenced(code) {
                if rank(&used).is_some_and(|r| r > own) {
                    bad.push(format!("{}:{}: {top} → {used}", rel.display(), n + 1));
                }
            }
        }
    }
    bad
}

#[test]
fn no_layer_imports_a_higher_one() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let bad = violations(&root);
    assert!(bad.is_empty(), "upward imports:\n{}", bad.join("\n"));
}

#[test]
fn the_check_catches_an_upward_import() {
    // The same scan over a small tree with one upward and one allowed import.
    let dir = std::env::temp_dir().join(format!("curadiff-layers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("eval")).unwrap();
    std::fs::write(
        dir.join("eval/x.rs"),
        "use crate::data::images;\nuse crate::train::params::HostParam; // up\n",
    )
    .unwrap();
    std::fs::write(dir.join("bench.rs"), "use crate::train::run;\n").unwrap();
    let bad = violations(&dir);
    assert_eq!(bad, vec!["eval/x.rs:2: eval → train".to_string()]);
    std::fs::remove_dir_all(&dir).ok();
}
