//! The pictures a grid report shows from its cells' run directories: each arm's final
//! samples (the toy scatter plot or the image sample grid of `RUN/samples/final.png`) and,
//! for arms with an adaptive noise schedule, its noise-schedule profiles
//! (`RUN/noise/profile.svg`, `RUN/noise/pi.svg`) and warnings, all of the arm's first seed.

use std::path::{Path, PathBuf};

use super::doc::Block;
use crate::error::{Error, Result};

/// The run directory of the arm's lowest seed under `out/cells/ARM/seed-N`, with N.
pub fn first_cell(out: &Path, arm: &str) -> Option<(u64, PathBuf)> {
    let dir = out.join("cells").join(arm);
    std::fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let seed = name.strip_prefix("seed-")?.parse::<u64>().ok()?;
            Some((seed, e.path()))
        })
        .min_by_key(|(s, _)| *s)
}

fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })
}

/// The noise-schedule blocks of run directory `run` (its profile and π plots and warnings),
/// empty when the run has no adaptive schedule; `rel` is the run's path relative to the
/// report and `who` names it in the captions.
pub fn noise_blocks(run: &Path, rel: &str, who: &str) -> Result<Vec<Block>> {
    let mut blocks = Vec::new();
    for (file, what) in [
        ("profile", "entropy-rate profile"),
        ("pi", "training noise distribution π"),
    ] {
        let svg = run.join("noise").join(format!("{file}.svg"));
        if svg.exists() {
            blocks.push(Block::Plot {
                caption: format!("{who}: {what}"),
                stem: format!("{rel}noise/{file}"),
                svg: read_text(&svg)?,
            });
        }
    }
    let warnings = run.join("noise").join("warnings.txt");
    if warnings.exists() {
        blocks.push(Block::Para(format!("{who}: noise-schedule warnings")));
        blocks.push(Block::Pre(read_text(&warnings)?));
    }
    Ok(blocks)
}

/// The final pictures and noise-schedule profiles of each arm's first seed.
pub fn cell_blocks(out: &Path, arms: &[String]) -> Result<Vec<Block>> {
    let mut pictures = Vec::new();
    let mut noise = Vec::new();
    for arm in arms {
        let Some((seed, dir)) = first_cell(out, arm) else {
            continue;
        };
        let rel = format!("cells/{arm}/seed-{seed}/");
        let png = dir.join("samples").join("final.png");
        if png.exists() {
            pictures.push(Block::Picture {
                caption: format!("{arm}, seed {seed}: EMA samples at the end of training"),
                path: format!("{rel}samples/final.png"),
                png: read_bytes(&png)?,
            });
        }
        noise.extend(noise_blocks(&dir, &rel, &format!("{arm}, seed {seed}"))?);
    }
    let mut blocks = Vec::new();
    if !pictures.is_empty() {
        blocks.push(Block::Heading(
            "Samples at the end of training (first seed of each arm)".into(),
        ));
        blocks.extend(pictures);
    }
    if !noise.is_empty() {
        blocks.push(Block::Heading(
            "Noise-schedule profiles (first seed of each arm)".into(),
        ));
        blocks.extend(noise);
    }
    Ok(blocks)
}
