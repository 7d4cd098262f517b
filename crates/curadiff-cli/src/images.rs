//! Image commands: train the Fashion-MNIST feature classifier, and image metrics of a samples
//! file or of a run's snapshots.

use anyhow::Result;
use curadiff::data::images::{self, ImageSet, Split};
use curadiff::eval::classifier::{self, Classifier, ClassifierConfig};
use curadiff::eval::images::{evaluate, ImageMetrics};
use curadiff::imagejob;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The Fashion-MNIST folder: `--data`, or the Debian package's location.
fn fmnist_dir(data: Option<&Path>) -> PathBuf {
    data.map_or_else(
        || PathBuf::from(images::FASHION_MNIST_DIR),
        Path::to_path_buf,
    )
}

/// `curadiff classifier`: trains the feature classifier on the 60,000 training images,
/// reports its test accuracy and saves it (default: the cache path of its seed, the metrics'
/// for seed 0). An existing file is kept (its accuracy is reported) unless `force`.
pub fn train_classifier(
    out: Option<PathBuf>,
    data: Option<PathBuf>,
    cfg: ClassifierConfig,
    force: bool,
) -> Result<()> {
    let path = out.unwrap_or_else(|| classifier::path_for_seed(cfg.seed));
    let dir = fmnist_dir(data.as_deref());
    let test = images::load_fashion_mnist(&dir, Split::Test)?;
    if path.exists() && !force {
        let clf = Classifier::load(&path)?;
        let acc = clf.accuracy(&test)?;
        println!(
            "{}",
            serde_json::json!({ "classifier": path, "test_accuracy": acc, "trained": false })
        );
        return Ok(());
    }
    let train = images::load_fashion_mnist(&dir, Split::Train)?;
    let t = Instant::now();
    let mut last = 0;
    let clf = classifier::train(&train, &cfg, &mut |done, total, loss| {
        let pct = 100 * done / total.max(1);
        if pct >= last + 10 {
            last = pct;
            eprintln!("classifier: {pct}% (loss {loss:.4})");
        }
    })?;
    let seconds = t.elapsed().as_secs_f64();
    let acc = clf.accuracy(&test)?;
    clf.save(&path)?;
    println!(
        "{}",
        serde_json::json!({
            "classifier": path, "test_accuracy": acc, "train_seconds": seconds,
            "trained": true, "config": cfg,
        })
    );
    Ok(())
}

fn load_classifier(path: Option<&Path>) -> Result<Classifier> {
    let p = path.map_or_else(classifier::default_path, Path::to_path_buf);
    if !p.exists() {
        anyhow::bail!(curadiff::Error::Config(format!(
            "no feature classifier at {}; train it once with `curadiff classifier` \
             (about 4 minutes), or pass --classifier FILE",
            p.display()
        )));
    }
    Ok(Classifier::load(&p)?)
}

/// Metrics of a samples file against Fashion-MNIST's test split.
pub fn eval_samples(
    samples: &Path,
    labels: Option<PathBuf>,
    clf_path: Option<&Path>,
    data: Option<&Path>,
    seed: u64,
) -> Result<ImageMetrics> {
    let labels = labels.or_else(|| {
        let p = imagejob::labels_path(samples);
        p.exists().then_some(p)
    });
    let set: ImageSet = images::load_npy_images_with_classes(samples, labels.as_deref(), Some(10))?;
    let clf = load_classifier(clf_path)?;
    let reference = images::load_fashion_mnist(&fmnist_dir(data), Split::Test)?;
    let l: Vec<usize> = set.labels.iter().map(|&c| c as usize).collect();
    Ok(evaluate(
        &clf,
        &set.pixels,
        set.len(),
        labels.is_some().then_some(l.as_slice()),
        &reference,
        seed,
    )?)
}

/// Metrics of a run: `req.n` class-conditional samples (classes in turn) of `req` at every
/// snapshot (or only the newest checkpoint), one JSON line each, with the training nimg and
/// seconds.
pub fn eval_run(
    req: &imagejob::SampleRequest,
    snapshots: bool,
    clf_path: Option<&Path>,
    data: Option<&Path>,
) -> Result<()> {
    let clf = load_classifier(clf_path)?;
    let reference = images::load_fashion_mnist(&fmnist_dir(data), Split::Test)?;
    let mut labels: Vec<Option<String>> = if snapshots {
        curadiff::train::image_run::snapshot_labels(&req.run)?
            .into_iter()
            .map(Some)
            .collect()
    } else {
        Vec::new()
    };
    labels.push(None);
    for label in labels {
        let r = imagejob::SampleRequest {
            snapshot: label.clone(),
            ..req.clone()
        };
        let (m, c, sample_seconds) = imagejob::score(&r, &clf, &reference)?;
        println!(
            "{}",
            serde_json::json!({
                "snapshot": label.unwrap_or_else(|| "latest".into()),
                "nimg": c.nimg, "train_seconds": c.total_seconds(), "cfg": req.cfg,
                "guide": req.guide.as_ref().map(|g| &g.0),
                "guidance": req.guide.as_ref().map(|g| g.1),
                "phema": req.phema.as_ref().map(|t| t.sigma_rel),
                "guide_phema": req.guide_phema.as_ref().map(|t| t.sigma_rel),
                "fd": m.fd, "kid": m.kid_mean, "precision": m.precision, "recall": m.recall,
                "class_accuracy": m.class_accuracy, "per_class_accuracy": m.per_class_accuracy,
                "feature_network": m.feature_network, "n": req.n, "sample_seconds": sample_seconds,
            })
        );
    }
    Ok(())
}

/// FD of a samples file against Fashion-MNIST's test split on ImageNet MobileNetV2 features
/// (images resized to `side`), with the feature network's name.
pub fn fd_mobilenet(
    samples: &Path,
    weights: &Path,
    side: usize,
    data: Option<&Path>,
) -> Result<(f64, String)> {
    use curadiff::eval::mobilenet::{feature_network_name, frechet_distance_mobilenet, MobileNet};
    let set = images::load_npy_images(samples, None)?;
    let net = MobileNet::load(weights)?;
    let reference = images::load_fashion_mnist(&fmnist_dir(data), Split::Test)?;
    let fd = frechet_distance_mobilenet(&net, &set.pixels, set.len(), &reference, side)?;
    Ok((fd, feature_network_name(side)))
}
