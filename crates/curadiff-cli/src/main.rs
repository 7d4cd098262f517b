//! `curadiff`: arguments → validated config → library. Exit codes: 0 success, 1 failure,
//! 2 bad input (usage, config, missing or malformed files), 3 training diverged (non-finite
//! loss).

use anyhow::{Context, Result};
use clap::Parser;
use curadiff::toyjob::{self, DemoConfig, Models, Weights};
use curadiff::train::presets::{preset, PRESETS};
use curadiff::train::run::{self, Observer};
use indicatif::{ProgressBar, ProgressStyle};

mod ambient;
mod args;
mod bench;
mod curriculum;
mod images;
mod phema;
mod prune;
mod report;
mod tables;

use args::{Cli, Command, EvalWhat};
use tables::{demo_table, seeds_table};

/// A progress bar over images trained.
struct Bar {
    bar: Option<ProgressBar>,
}

impl Observer for Bar {
    fn progress(&mut self, nimg: u64, total: u64, loss: f64) {
        let bar = self.bar.get_or_insert_with(|| {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {percent}% nimg {human_pos}/{human_len} eta {eta} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            b
        });
        bar.set_length(total);
        bar.set_position(nimg);
        bar.set_message(format!("loss {loss:.4}"));
        if nimg >= total {
            bar.finish();
            self.bar = None;
        }
    }
    fn note(&mut self, message: &str) {
        match &self.bar {
            Some(b) => b.println(message),
            None => eprintln!("{message}"),
        }
    }
}

fn main() {
    let cli = Cli::parse();
    let code = match execute(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit_code(&e)
        }
    };
    std::process::exit(code);
}

fn exit_code(e: &anyhow::Error) -> i32 {
    use curadiff::Error as E;
    match e.chain().find_map(|c| c.downcast_ref::<E>()) {
        Some(E::NonFiniteLoss { .. }) => 3,
        Some(E::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => 2,
        Some(
            E::UnknownPreset { .. }
            | E::UnknownKey { .. }
            | E::InvalidValue { .. }
            | E::Config(_)
            | E::ConfigMismatch { .. }
            | E::BadFile { .. }
            | E::BadCheckpoint { .. },
        ) => 2,
        _ => 1,
    }
}

fn execute(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train {
            preset: name,
            out,
            mut sets,
            seed,
            dry_run,
            budget_seconds,
            budget_nimg,
        } => {
            if let Some(s) = budget_seconds {
                sets.push(format!("train.budget_seconds={s}"));
            }
            if let Some(n) = budget_nimg {
                sets.push(format!("train.budget_nimg={n}"));
            }
            let mut cfg = preset(&name)?.with_overrides(&sets)?;
            if let Some(s) = seed {
                cfg.seed = s;
            }
            if dry_run {
                print!("{}", cfg.to_toml()?);
                return Ok(());
            }
            let o = curadiff::trainjob::train(&out, &cfg, &mut Bar { bar: None })
                .with_context(|| format!("training {}", out.display()))?;
            println!(
                "{}",
                serde_json::json!({
                    "run": out, "step": o.counters.step, "nimg": o.counters.nimg,
                    "loss": o.last_loss, "seconds": o.counters.seconds,
                    "resumed_from": o.resumed_from,
                })
            );
        }
        Command::Sample {
            run,
            guide,
            guidance,
            n,
            seed,
            raw,
            out,
            plot,
            class,
            unconditional,
            cfg,
            snapshot,
            phema: ph,
        } => {
            let rd = run::RunDir::new(&run);
            if rd.config().exists() && rd.read_config()?.data.is_images() {
                let (phema, guide_phema) = phema::targets(&ph);
                let req = curadiff::imagejob::SampleRequest {
                    run,
                    snapshot,
                    guide: guide.zip(guidance),
                    cfg,
                    class,
                    unconditional,
                    n,
                    seed,
                    raw,
                    phema,
                    guide_phema,
                };
                let s = curadiff::imagejob::sample(&req)?;
                curadiff::imagejob::write(&out, &s)?;
                if let Some(p) = plot {
                    curadiff::plot::grid::sample_grid_png(
                        &s.images,
                        s.shape,
                        &s.labels,
                        2,
                        &format!("{n} samples"),
                        &p,
                    )?;
                }
                eprintln!("wrote {n} images to {}", out.display());
                return Ok(());
            }
            if class.is_some()
                || unconditional
                || cfg.is_some()
                || snapshot.is_some()
                || ph.phema.is_some()
                || ph.guide_phema.is_some()
            {
                anyhow::bail!(curadiff::Error::Config(
                    "--class, --unconditional, --cfg, --snapshot, --phema and --guide-phema \
                     are for image runs"
                        .into()
                ));
            }
            let g = guide.as_deref().zip(guidance);
            let weights = if raw { Weights::Raw } else { Weights::Ema };
            let models = Models::load(&run, g, weights)?;
            let samples = models.sample(n, seed)?;
            toyjob::write_samples(&out, &samples)?;
            if let Some(p) = plot {
                curadiff::plot::scatter::scatter_png(
                    &models.mixture(),
                    &samples,
                    &format!("{n} samples"),
                    &p,
                )?;
            }
            eprintln!("wrote {n} samples to {}", out.display());
        }
        Command::Eval {
            what:
                EvalWhat::Toy {
                    samples,
                    run,
                    guide,
                    guidance,
                    seed,
                },
        } => {
            let pts = toyjob::read_samples(&samples)?;
            let mut json = serde_json::Map::new();
            let classes = match &run {
                Some(r) => run::RunDir::new(r).read_config()?.data.classes,
                None => curadiff::data::toy2d::Classes::A,
            };
            let m = curadiff::data::toy2d::Mixture::tree(classes);
            let sm = curadiff::eval::toy::sample_metrics(&m, &pts, seed)?;
            json.insert("samples".into(), serde_json::to_value(sm)?);
            if let Some(r) = run {
                let models = Models::load(&r, guide.as_deref().zip(guidance), Weights::Ema)?;
                json.insert(
                    "model".into(),
                    serde_json::to_value(models.model_metrics(seed)?)?,
                );
            }
            println!("{}", serde_json::to_string_pretty(&json)?);
        }
        Command::Eval {
            what:
                EvalWhat::ToyMmse {
                    run: dir,
                    every,
                    n,
                    seed,
                },
        } => {
            let cfg = run::RunDir::new(&dir).read_config()?;
            let records = curadiff::train::noise_log::read(&dir)?;
            let Some(last) = records.last() else {
                return Err(curadiff::Error::Config(format!(
                    "{} has no noise-schedule refresh yet (noise/refreshes.jsonl); train it \
                     with --set diffusion.schedule.kind=infonoise (or adaptive) past the warm-up",
                    dir.display()
                ))
                .into());
            };
            let m = curadiff::data::toy2d::Mixture::tree(cfg.data.classes);
            for (k, (&sigma, &est)) in last.sigma.iter().zip(&last.m_hat).enumerate() {
                if k % every.max(1) != 0 {
                    continue;
                }
                let exact = curadiff::eval::toy::exact_mmse(&m, sigma, n, seed);
                println!(
                    "{}",
                    serde_json::json!({
                        "step": last.step, "sigma": sigma, "m_hat": est,
                        "observed": last.observed.get(k), "exact_mmse": exact,
                        "ratio": est / exact,
                    })
                );
            }
        }
        Command::Demo {
            out,
            seeds,
            n,
            guidance,
            sets,
            guide_sets,
            main_preset,
            guide_preset,
        } => {
            let mut all = Vec::new();
            for &seed in &seeds {
                let dir = if seeds.len() > 1 {
                    out.join(format!("seed-{seed}"))
                } else {
                    out.clone()
                };
                let cfg = DemoConfig {
                    out: dir,
                    seed,
                    n,
                    sample_seed: 7,
                    guidance,
                    sets: sets.clone(),
                    guide_sets: guide_sets.clone(),
                    main_preset: main_preset.clone(),
                    guide_preset: guide_preset.clone(),
                };
                let cols = toyjob::demo(&cfg, &mut Bar { bar: None })?;
                println!("seed {seed}\n{}", demo_table(&cols));
                println!("metrics: {}", cfg.out.join("metrics.json").display());
                all.push(cols);
            }
            if all.len() > 1 {
                println!("{}", seeds_table(&seeds, &all));
            }
        }
        Command::Bench {
            speed,
            grid,
            out,
            shard,
            report,
            steps,
            sets,
        } => match (speed, grid, out) {
            (Some(p), _, _) => bench::speed(&p, steps, &sets)?,
            (None, Some(g), Some(o)) => bench::grid(&g, &o, shard.as_deref(), report)?,
            _ => anyhow::bail!(curadiff::Error::Config(
                "bench needs --speed PRESET or --grid FILE.toml --out DIR".into()
            )),
        },
        Command::Classifier {
            out,
            data,
            epochs,
            seed,
            force,
            run,
        } => {
            let cfg = curadiff::eval::classifier::ClassifierConfig {
                epochs,
                seed,
                ..Default::default()
            };
            match run {
                Some(r) => curriculum::pool_classifier(&r, out, cfg, force)?,
                None => images::train_classifier(out, data, cfg, force)?,
            }
        }
        Command::Hard {
            source,
            rule,
            threshold,
            fraction,
            folds,
            epochs,
            seed,
            out,
        } => curriculum::hard(
            &source, rule, threshold, fraction, folds, epochs, seed, &out,
        )?,
        Command::Curriculum(args) => curriculum::train_arm(&args)?,
        Command::Synth(args) => curriculum::synth(args.into())?,
        Command::Eval {
            what:
                EvalWhat::Images {
                    samples,
                    labels,
                    run,
                    snapshots,
                    n,
                    cfg,
                    guide,
                    guidance,
                    phema: ph,
                    classifier,
                    mobilenet,
                    mobilenet_side,
                    data,
                    seed,
                },
        } => match (samples, run) {
            (Some(s), _) => {
                let m =
                    images::eval_samples(&s, labels, classifier.as_deref(), data.as_deref(), seed)?;
                let mut v = serde_json::to_value(&m)?;
                if let Some(mp) = mobilenet {
                    let (fd, name) =
                        images::fd_mobilenet(&s, &mp, mobilenet_side, data.as_deref())?;
                    v["fd_mobilenet"] = serde_json::json!({ "fd": fd, "feature_network": name });
                }
                println!("{}", serde_json::to_string_pretty(&v)?);
            }
            (None, Some(r)) => {
                let (phema, guide_phema) = phema::targets(&ph);
                if snapshots && phema.is_some() {
                    anyhow::bail!(curadiff::Error::Config(
                        "--phema picks the weights itself; leave out --snapshots".into()
                    ));
                }
                let req = curadiff::imagejob::SampleRequest {
                    run: r,
                    snapshot: None,
                    guide: guide.zip(guidance),
                    cfg,
                    class: None,
                    unconditional: false,
                    n,
                    seed,
                    raw: false,
                    phema,
                    guide_phema,
                };
                images::eval_run(&req, snapshots, classifier.as_deref(), data.as_deref())?
            }
            (None, None) => anyhow::bail!(curadiff::Error::Config(
                "eval images needs --samples FILE.npy or --run RUN".into()
            )),
        },
        Command::Report { run } => report::run(&run)?,
        Command::Prune { what } => prune::run(what)?,
        Command::Corrupt {
            source,
            corrupt,
            out,
        } => ambient::export(&source, &corrupt, &out)?,
        Command::Ambient { what } => ambient::run(what)?,
        Command::Phema {
            run,
            sigma_rel,
            nimg,
            out,
            from,
        } => phema::write_reconstruction(
            &run,
            &curadiff::train::phema::reconstruct::Target {
                sigma_rel,
                nimg,
                from,
            },
            out,
        )?,
        Command::SweepGuidance {
            run,
            guide,
            main_sigma_rel,
            guide_sigma_rel,
            w,
            cfg,
            n,
            seed,
            out,
            classifier,
            data,
        } => phema::sweep(&curadiff::bench::guidance_sweep::SweepConfig {
            main: run,
            guide,
            main_sigma_rels: main_sigma_rel,
            guide_sigma_rels: guide_sigma_rel,
            w,
            cfg,
            n,
            seed,
            out,
            classifier,
            data,
        })?,
        Command::Presets => {
            for p in PRESETS {
                println!("{:<12} {}", p.name, p.about);
            }
        }
    }
    Ok(())
}
