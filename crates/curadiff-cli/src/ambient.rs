//! `curadiff corrupt` and `curadiff ambient`: a corrupted copy of a source, the
//! noise-conditional classifier, and the annotation of noise floors
//! (`curadiff::ambientjob`), each printing one JSON line.

use anyhow::{Context, Result};
use curadiff::ambientjob::{self, AnnotateRequest, FloorSource};
use curadiff::curation::ambient::annotate::AnnotateConfig;
use curadiff::curation::ambient::classifier::NoiseClassifierConfig;
use curadiff::curation::ambient::crops::CropConfig;
use curadiff::curation::ambient::locality::LocalityConfig;
use curadiff::curation::ambient::threshold::ThresholdConfig;
use curadiff::data::corrupt::config::CorruptConfig;
use curadiff::data::extra::ExtraConfig;
use curadiff::localityjob::{self, CropsRequest};
use curadiff::train::config::DataConfig;
use std::path::Path;

use crate::args::{AmbientWhat, CorruptArgs, SourceArgs};

/// The corruption of the flags, validated (errors name the flag).
fn corruption(c: &CorruptArgs) -> Result<CorruptConfig> {
    let cfg = CorruptConfig {
        kind: c.kind.clone(),
        fraction: c.fraction,
        sigma: c.sigma,
        quality: c.quality,
        length: c.length,
        angle: c.angle,
        angle_spread: c.angle_spread,
        seed: c.corrupt_seed,
    };
    cfg.validate("--")?;
    Ok(cfg)
}

/// The data.* values of the flags, with `corrupt` as data.corrupt.
fn data_config(s: &SourceArgs, corrupt: CorruptConfig) -> DataConfig {
    DataConfig {
        corrupt,
        ..s.pool.config(&s.data_kind)
    }
}

/// `curadiff corrupt`.
pub fn export(source: &SourceArgs, corrupt: &CorruptArgs, out: &Path) -> Result<()> {
    let cfg = corruption(corrupt)?;
    if !cfg.is_on() {
        anyhow::bail!(curadiff::Error::Config(
            "corrupt needs --kind blur, jpeg or motion and a --fraction above 0".into()
        ));
    }
    let data = data_config(source, CorruptConfig::default());
    let set = curadiff::train::image_data::clean_pool(&data, source.pool.data_seed)
        .context("loading the source (--data)")?;
    let got = curadiff::data::corrupt::export::export(&set, &cfg, out)
        .with_context(|| format!("writing the corrupted copy into {}", out.display()))?;
    println!(
        "{}",
        serde_json::json!({
            "out": out, "images": got.set.len(), "corrupted": got.meta.corrupted,
            "fingerprint": got.meta.fingerprint, "pool_fingerprint": got.meta.pool_fingerprint,
            "corrupt": cfg,
        })
    );
    Ok(())
}

/// Runs one `ambient` step.
pub fn run(what: AmbientWhat) -> Result<()> {
    match what {
        AmbientWhat::Classifier {
            source,
            corrupt,
            first,
            epochs,
            batch,
            lr,
            seed,
            p_mean,
            p_std,
            out,
        } => {
            let c = corruption(&corrupt)?;
            if c.kind == "none" {
                anyhow::bail!(curadiff::Error::Config(
                    "ambient classifier tells clean from corrupted images: give the corruption \
                     with --kind blur, jpeg or motion (and its strength)"
                        .into()
                ));
            }
            let cfg = NoiseClassifierConfig {
                epochs,
                batch,
                lr,
                seed,
                p_mean,
                p_std,
                ..Default::default()
            };
            let data = data_config(&source, CorruptConfig::default());
            let mut last = 0;
            let report = ambientjob::train_classifier(
                &data,
                source.pool.data_seed,
                first,
                &c,
                &cfg,
                &out,
                &mut |done, total, loss| {
                    let pct = 100 * done / total.max(1);
                    if pct >= last + 10 {
                        last = pct;
                        eprintln!("ambient classifier: {pct}% (loss {loss:.4})");
                    }
                },
            )
            .context("training the noise-conditional classifier")?;
            println!("{}", serde_json::to_string(&report)?);
        }
        AmbientWhat::Annotate {
            source,
            corrupt,
            classifier,
            fixed_sigma_tn,
            from_curves,
            all,
            points,
            sigma_lo,
            sigma_hi,
            draws,
            noise_seed,
            span,
            epsilon,
            out,
        } => {
            let floors = match (classifier, fixed_sigma_tn, from_curves) {
                (Some(c), None, None) => FloorSource::Classifier(c),
                (None, Some(s), None) => FloorSource::Fixed(s),
                (None, None, Some(f)) => FloorSource::FromCurves(f),
                _ => anyhow::bail!(curadiff::Error::Config(
                    "annotate needs one of --classifier FILE, --fixed-sigma-tn S or \
                     --from-curves FILE"
                        .into()
                )),
            };
            // With --from-curves the data is checked only when named.
            let data = match &floors {
                FloorSource::FromCurves(_) if source.pool.data.is_none() => None,
                _ => Some(data_config(&source, corruption(&corrupt)?)),
            };
            let req = AnnotateRequest {
                data,
                data_seed: source.pool.data_seed,
                floors,
                all,
                grid: AnnotateConfig {
                    points,
                    sigma_lo,
                    sigma_hi,
                    draws,
                    seed: noise_seed,
                },
                threshold: ThresholdConfig { span, epsilon },
                out: out.clone(),
            };
            let mut last = 0;
            let s = ambientjob::annotate(&req, &mut |done, total| {
                let pct = 100 * done / total.max(1);
                if pct >= last + 10 {
                    last = pct;
                    eprintln!("annotate: {pct}% of {total}");
                }
            })
            .with_context(|| format!("annotating into {}", out.display()))?;
            for w in &s.warnings {
                eprintln!("warning: {w}");
            }
            println!("{}", serde_json::to_string(&s)?);
        }
        AmbientWhat::Crops {
            source,
            corrupt,
            extra,
            sizes,
            epochs,
            batch,
            lr,
            seed,
            threshold,
            share,
            floors,
            out,
        } => {
            let mut data = data_config(&source, corruption(&corrupt)?);
            data.extra = ExtraConfig {
                kind: extra.extra_kind.clone(),
                path: extra
                    .extra_path
                    .as_ref()
                    .map_or(String::new(), |p| p.display().to_string()),
                count: extra.extra_count,
            };
            let req = CropsRequest {
                data,
                data_seed: source.pool.data_seed,
                crops: CropConfig {
                    sizes,
                    epochs,
                    batch,
                    lr,
                    seed,
                    threshold,
                },
                locality: LocalityConfig {
                    share,
                    ..Default::default()
                },
                floors,
                out: out.clone(),
            };
            let mut last = (0, 0);
            let s = localityjob::crops(&req, &mut |side, done, total, loss| {
                let pct = 100 * done / total.max(1);
                if side != last.0 || pct >= last.1 + 25 {
                    last = (side, pct);
                    eprintln!("crop classifier {side} px: {pct}% (loss {loss:.4})");
                }
            })
            .with_context(|| format!("annotating crops into {}", out.display()))?;
            println!("{}", serde_json::to_string(&s)?);
        }
        AmbientWhat::Histogram { windows, out } => {
            let mut files = Vec::new();
            for w in &windows {
                let Some((label, file)) = w.rsplit_once('=') else {
                    anyhow::bail!(curadiff::Error::Config(format!(
                        "--windows {w}: give LABEL=FILE, e.g. --windows 'blur 1=runs/ann/windows.npy'"
                    )));
                };
                files.push((label.to_string(), std::path::PathBuf::from(file)));
            }
            let h = ambientjob::floor_histogram(&files, &out)
                .with_context(|| format!("plotting the floors into {}", out.display()))?;
            println!("{}", serde_json::to_string(&h)?);
        }
        AmbientWhat::Locality {
            source,
            share,
            points,
        } => {
            let data = data_config(&source, CorruptConfig::default());
            let cfg = LocalityConfig {
                share,
                points,
                ..Default::default()
            };
            let map = localityjob::locality_map(&data, source.pool.data_seed, &cfg)
                .context("deriving the locality map")?;
            println!("{}", serde_json::to_string(&map)?);
        }
    }
    Ok(())
}
