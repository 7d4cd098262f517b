//! `curadiff prune`: surrogate features, merge, score and select
//! (`curadiff::curation::prune`), each printing one JSON line.

use anyhow::{Context, Result};
use curadiff::curation::prune::criterion::Criterion;
use curadiff::curation::prune::feature_net::{FeatureNet, MobileNetFeatures, SurrogateClassifier};
use curadiff::curation::prune::features::{extract, Features};
use curadiff::curation::prune::scores::Scores;
use curadiff::curation::prune::select::{select, write_subset, SelectConfig};
use curadiff::curation::prune::shard::{self, Shard};
use curadiff::data::images::ImageSet;
use curadiff::eval::classifier;
use std::path::Path;
use std::time::Instant;

use crate::args::{CriterionArg, FeatureNetArg, NetArgs, PoolArgs, PruneWhat};

/// Runs one `prune` step.
pub fn run(what: PruneWhat) -> Result<()> {
    match what {
        PruneWhat::Features {
            pool,
            net,
            shard,
            num_shards,
            out,
        } => features(&pool, &net, Shard::new(shard, num_shards)?, &out),
        PruneWhat::Merge { out } => merge(&out),
        PruneWhat::Score {
            pool,
            net,
            from_features,
            criterion,
            delta,
            seed,
            out,
        } => {
            let c = criterion_of(criterion, delta, seed)?;
            score(&pool, &net, from_features.as_deref(), &c, &out)
        }
        PruneWhat::Select {
            pool,
            scores,
            keep,
            per_class,
            min_per_class,
            out,
        } => select_coreset(
            &pool,
            &scores,
            &SelectConfig {
                keep,
                per_class,
                min_per_class,
            },
            &out,
        ),
    }
}

/// The pool the training run with these data.* values would draw from.
fn load_pool(p: &PoolArgs) -> Result<ImageSet> {
    curadiff::train::image_data::pool(&p.pool.config(&p.kind), p.pool.data_seed)
        .context("loading the pool (--data)")
}

fn load_net(net: &NetArgs, which: FeatureNetArg) -> Result<Box<dyn FeatureNet>> {
    Ok(match which {
        FeatureNetArg::Classifier => {
            let path = net
                .classifier
                .clone()
                .unwrap_or_else(|| classifier::path_for_seed(1));
            let metric = net
                .metric_classifier
                .clone()
                .unwrap_or_else(classifier::default_path);
            Box::new(SurrogateClassifier::load(
                &path,
                &metric,
                net.force_metric_classifier,
            )?)
        }
        FeatureNetArg::Mobilenet => {
            let path = net
                .mobilenet
                .clone()
                .unwrap_or_else(MobileNetFeatures::default_path);
            Box::new(MobileNetFeatures::load(&path, net.mobilenet_side)?)
        }
    })
}

/// The features of `shard` of `pool`, with progress on stderr.
fn embed(pool: &ImageSet, net: &NetArgs, which: FeatureNetArg, shard: Shard) -> Result<Features> {
    let n = load_net(net, which)?;
    if shard.index == 0 {
        match (n.making_seconds(), which) {
            (Some(t), _) => eprintln!(
                "curation counts the surrogate's training: {t:.1} s (once per pool, in shard 0)"
            ),
            (None, FeatureNetArg::Classifier) => eprintln!(
                "warning: the surrogate classifier's file does not record its training time (it \
                 was written before it was), so curation will not count it; train it again \
                 with `curadiff classifier --seed 1` to count it"
            ),
            (None, FeatureNetArg::Mobilenet) => eprintln!(
                "note: MobileNetV2 was trained elsewhere; its training is not counted in curation"
            ),
        }
    }
    let mut last = 0;
    let f = extract(n.as_ref(), pool, shard, net.block, &mut |done, total| {
        let pct = 100 * done / total.max(1);
        if pct >= last + 10 {
            last = pct;
            eprintln!("features ({}): {pct}% of {total}", n.name());
        }
    })?;
    Ok(f)
}

fn criterion_of(c: CriterionArg, delta: Option<f64>, seed: u64) -> Result<Criterion> {
    if delta.is_some() && c != CriterionArg::Gaussian {
        anyhow::bail!(curadiff::Error::Config(
            "--delta is the ridge of the gaussian criterion; leave it out for the others".into()
        ));
    }
    Ok(match c {
        CriterionArg::Gaussian => Criterion::Gaussian { delta },
        CriterionArg::ModerateDs => Criterion::ModerateDs,
        CriterionArg::ClosestToMedian => Criterion::ClosestToMedian,
        CriterionArg::Kcenter => Criterion::Kcenter,
        CriterionArg::Random => Criterion::Random { seed },
    })
}

fn features(pool: &PoolArgs, net: &NetArgs, shard: Shard, out: &Path) -> Result<()> {
    let which = net.features.ok_or_else(|| {
        curadiff::Error::Config(
            "prune features needs --features classifier or --features mobilenet".into(),
        )
    })?;
    let pool = load_pool(pool)?;
    let f = embed(&pool, net, which, shard)?;
    let path = if shard.count == 1 {
        out.to_path_buf()
    } else {
        shard.path(out)
    };
    f.write(&path)?;
    println!(
        "{}",
        serde_json::json!({
            "features": path, "rows": f.len(), "start": f.meta.start, "dim": f.dim(),
            "pool": pool.len(), "shard": shard.index, "num_shards": shard.count,
            "feature_net": f.meta.feature_net, "seconds": f.meta.made_for.seconds,
        })
    );
    if shard.count > 1 {
        eprintln!(
            "when every shard is done: curadiff prune merge --out {} (or prune score \
             --from-features {} merges them)",
            out.display(),
            out.display()
        );
    }
    Ok(())
}

/// Merges the shard files beside `out` into `out`.
fn merge_into(out: &Path) -> Result<Features> {
    let f = shard::merge(out)?;
    f.write(out)?;
    eprintln!(
        "merged {} shard files into {}",
        shard::find(out)?.len(),
        out.display()
    );
    Ok(f)
}

fn merge(out: &Path) -> Result<()> {
    let f = merge_into(out)?;
    println!(
        "{}",
        serde_json::json!({
            "features": out, "rows": f.len(), "dim": f.dim(),
            "feature_net": f.meta.feature_net, "seconds": f.meta.made_for.seconds,
        })
    );
    Ok(())
}

fn score(
    pool: &PoolArgs,
    net: &NetArgs,
    from_features: Option<&Path>,
    criterion: &Criterion,
    out: &Path,
) -> Result<()> {
    let pool = load_pool(pool)?;
    let scores = match (from_features, net.features) {
        (Some(file), _) => {
            if !file.exists() && !shard::find(file)?.is_empty() {
                merge_into(file)?;
            }
            let f = Features::read_for(file, &pool)
                .with_context(|| format!("reading --from-features {}", file.display()))?;
            Scores::compute(&f, criterion)?
        }
        (None, Some(which)) => {
            Scores::compute(&embed(&pool, net, which, Shard::WHOLE)?, criterion)?
        }
        (None, None) => match criterion {
            Criterion::Random { seed } => Scores::random(&pool, *seed),
            _ => anyhow::bail!(curadiff::Error::Config(format!(
                "--criterion {} needs features: --features classifier|mobilenet, or \
                 --from-features FILE",
                criterion.name()
            ))),
        },
    };
    scores.write(out)?;
    let (lo, hi) = scores
        .values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    println!(
        "{}",
        serde_json::json!({
            "scores": out, "n": scores.values.len(), "criterion": scores.meta.criterion,
            "feature_net": scores.meta.feature_net, "min": lo, "max": hi,
            "seconds": scores.meta.made_for.seconds,
        })
    );
    Ok(())
}

fn select_coreset(pool: &PoolArgs, scores: &Path, cfg: &SelectConfig, out: &Path) -> Result<()> {
    cfg.validate()?;
    let pool = load_pool(pool)?;
    let s = Scores::read_for(scores, &pool).with_context(|| {
        format!(
            "checking --scores {} against the pool of --data ({} examples)",
            scores.display(),
            pool.len()
        )
    })?;
    let t = Instant::now();
    let sel = select(&s.values, &pool.labels, pool.num_classes, cfg)?;
    for w in sel.warnings(&pool.class_names, cfg) {
        eprintln!("warning: {w}");
    }
    let seconds = s.meta.made_for.seconds + t.elapsed().as_secs_f64();
    write_subset(out, &pool, &sel, seconds)?;
    println!(
        "{}",
        serde_json::json!({
            "subset": out, "kept": sel.keep.len(), "pool": pool.len(),
            "kept_per_class": sel.kept, "criterion": s.meta.criterion,
            "feature_net": s.meta.feature_net, "seconds": seconds,
            "train_with": format!("--set data.subset={}", out.display()),
        })
    );
    Ok(())
}
