//! `curadiff bench --speed prune`: the cost of offline pruning, one JSON line: surrogate
//! features of N Fashion-MNIST training images (the first N; default all 60,000), then
//! each criterion on them. Overrides: `--set n=N`, `--set features=classifier|mobilenet`
//! (mobilenet reads the cached weights), `--set side=64` (mobilenet's input side),
//! `--set criteria=gaussian,kcenter` (default: all five).
//!
//! The classifier's weights do not change its cost, so it is trained for one step on 128
//! images (no cached file needed); the target is under 60 s for features and every
//! criterion of 60,000 images on 2 cores.

use std::time::Instant;

use crate::curation::prune::criterion::{Criterion, NAMES};
use crate::curation::prune::feature_net::{FeatureNet, MobileNetFeatures, SurrogateClassifier};
use crate::curation::prune::features::{extract, BLOCK};
use crate::curation::prune::shard::Shard;
use crate::data::images::{load_fashion_mnist, Split, FASHION_MNIST_DIR};
use crate::error::{Error, Result};
use crate::eval::classifier::{train, ClassifierConfig};

/// The benchmark's options from `key=value` overrides.
struct Options {
    n: usize,
    features: String,
    side: usize,
    criteria: Vec<String>,
}

fn options(sets: &[String]) -> Result<Options> {
    let mut o = Options {
        n: 60_000,
        features: "classifier".into(),
        side: 64,
        criteria: NAMES.iter().map(|s| s.to_string()).collect(),
    };
    for s in sets {
        let bad = |why: &str| {
            Error::Config(format!(
                "--set {s}: {why}; bench --speed prune takes n=N, features=classifier|mobilenet, \
                 side=PIXELS and criteria=NAME,… ({})",
                NAMES.join(", ")
            ))
        };
        let (k, v) = s.split_once('=').ok_or_else(|| bad("expected KEY=VALUE"))?;
        match k.trim() {
            "n" => o.n = v.trim().parse().map_err(|_| bad("n is a whole number"))?,
            "side" => {
                o.side = v
                    .trim()
                    .parse()
                    .map_err(|_| bad("side is a whole number"))?
            }
            "features" => o.features = v.trim().to_string(),
            "criteria" => o.criteria = v.split(',').map(|c| c.trim().to_string()).collect(),
            _ => return Err(bad("unknown key")),
        }
    }
    if let Some(c) = o.criteria.iter().find(|c| !NAMES.contains(&c.as_str())) {
        return Err(Error::Config(format!(
            "unknown criterion '{c}'; valid: {}",
            NAMES.join(", ")
        )));
    }
    Ok(o)
}

/// Times features and criteria; see the module doc.
pub fn prune_speed(sets: &[String]) -> Result<serde_json::Value> {
    let o = options(sets)?;
    let all = load_fashion_mnist(std::path::Path::new(FASHION_MNIST_DIR), Split::Train)?;
    let n = o.n.clamp(2, all.len());
    let pool = all.subset(&(0..n).collect::<Vec<_>>());
    let net: Box<dyn FeatureNet> = match o.features.as_str() {
        "classifier" => {
            let few = all.subset(&(0..128).collect::<Vec<_>>());
            let cfg = ClassifierConfig {
                epochs: 1,
                seed: 1,
                ..Default::default()
            };
            let clf = train(&few, &cfg, &mut |_, _, _| {})?;
            Box::new(SurrogateClassifier::from_classifier(
                clf,
                "untrained".into(),
            ))
        }
        "mobilenet" => Box::new(MobileNetFeatures::load(
            &MobileNetFeatures::default_path(),
            o.side,
        )?),
        other => {
            return Err(Error::Config(format!(
                "features={other}: use classifier or mobilenet"
            )))
        }
    };
    let t = Instant::now();
    let f = extract(net.as_ref(), &pool, Shard::WHOLE, BLOCK, &mut |_, _| {})?;
    let t_features = t.elapsed().as_secs_f64();
    let mut seconds = serde_json::Map::new();
    seconds.insert("features".into(), t_features.into());
    let mut total = t_features;
    for name in &o.criteria {
        let c = match name.as_str() {
            "gaussian" => Criterion::Gaussian { delta: None },
            "moderate-ds" => Criterion::ModerateDs,
            "closest-to-median" => Criterion::ClosestToMedian,
            "kcenter" => Criterion::Kcenter,
            _ => Criterion::Random { seed: 0 },
        };
        let t = Instant::now();
        c.score(&f)?;
        let s = t.elapsed().as_secs_f64();
        total += s;
        seconds.insert(name.clone(), s.into());
    }
    Ok(serde_json::json!({
        "preset": "prune", "n": n, "feature_net": net.name(), "dim": net.dim(),
        "threads": std::thread::available_parallelism().map_or(1, |t| t.get()),
        "seconds": seconds, "total_seconds": total,
        "feature_images_per_s": n as f64 / t_features,
    }))
}
