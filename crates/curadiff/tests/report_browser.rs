//! A tiny toy grid's `report.html` rendered by a real headless browser (Chromium's
//! `chromium-headless-shell`, `chromium` or `google-chrome` on PATH): the dumped DOM holds
//! every table with its cells, the SVG plots' text (titles, axis labels, legend entries) and
//! every picture decoded at its size; a screenshot is not blank and shows the arms' colours.
//! Without a browser at build time the browser test is ignored (and says why); the HTML
//! checks run either way.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use curadiff::bench::grid::{Targets, GRID_FILE};
use curadiff::bench::report::write_report;
use curadiff::plot::lines::COLORS;
use curadiff::plot::png::{decode_rgb, encode_rgb};

const ARMS: [&str; 2] = ["full", "ajest"];
const SEEDS: [u64; 2] = [0, 1];
/// Size of the fake final picture of each arm.
const PIC: (u32, u32) = (96, 64);

/// One `results.jsonl` line of a toy grid.
fn point(arm: &str, seed: u64, kind: &str, nimg: u64, quality: f64) -> String {
    let metrics = |q: f64| {
        serde_json::json!({
            "n": 500, "classification": q, "mandala": q * 0.6, "mmd": 0.01,
            "mean_loglik": -1.0,
        })
    };
    serde_json::json!({
        "arm": arm, "seed": seed, "kind": kind, "point": nimg as f64, "step": nimg / 64,
        "nimg": nimg, "nimg_scored": nimg * 4,
        "seconds": { "data": 0.001 * nimg as f64, "train": 0.002 * nimg as f64 },
        "unguided": metrics(quality), "guided": metrics(quality + 0.05),
        "exact_loss": 0.05 / quality,
    })
    .to_string()
}

/// A grid output folder with results, the grid file and each arm's final picture.
fn tiny_grid(out: &Path) {
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out).unwrap();
    let mut lines = Vec::new();
    for (a, arm) in ARMS.iter().enumerate() {
        for &seed in &SEEDS {
            let q = |n: f64| 0.4 + 0.1 * a as f64 + 0.05 * seed as f64 + n / 40_000.0;
            for nimg in [1024u64, 2048] {
                lines.push(point(arm, seed, "nimg", nimg, q(nimg as f64)));
            }
            lines.push(point(arm, seed, "final", 4096, q(4096.0)));
        }
        let dir = out.join(format!("cells/{arm}/seed-0/samples"));
        std::fs::create_dir_all(&dir).unwrap();
        let (w, h) = PIC;
        let rgb: Vec<u8> = (0..w * h)
            .flat_map(|i| [(i % w * 2) as u8, (i / w * 3) as u8, 200 - 90 * a as u8])
            .collect();
        std::fs::write(dir.join("final.png"), encode_rgb(&rgb, w, h).unwrap()).unwrap();
    }
    lines.push(r#"{"arm":"ajest","seed":2,"error":"diverged"}"#.into());
    std::fs::write(out.join("results.jsonl"), lines.join("\n") + "\n").unwrap();
    std::fs::write(
        out.join(GRID_FILE),
        "seeds = [0, 1]\nsamples = 500\neval_samples = 500\n",
    )
    .unwrap();
}

fn browser() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium-headless-shell", "chromium", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

/// Runs the browser headless on `page` with `args`; its stdout. Killed after 30 s.
fn render(browser: &Path, page: &Path, args: &[&str]) -> String {
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).map(|_| s)
    });
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{} failed: {status}", browser.display());
            break;
        }
        if t.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("{} did not finish in 30 s", browser.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    reader.join().unwrap().unwrap()
}

/// The trimmed contents of every SVG `<text>` element.
fn svg_texts(dom: &str) -> Vec<String> {
    dom.split("<text")
        .skip(1)
        .filter_map(|t| {
            let start = t.find('>')? + 1;
            let end = t.find("</text>")?;
            Some(t[start..end].trim().to_string())
        })
        .collect()
}

/// Writes the tiny grid's report into a fresh folder `tag`.
fn written(tag: &str) -> PathBuf {
    let out = std::env::temp_dir().join(format!("curadiff-report-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    tiny_grid(&out);
    let arms: Vec<String> = ARMS.iter().map(|a| a.to_string()).collect();
    write_report(&out, &arms, &Targets::default()).unwrap();
    out
}

#[test]
fn grid_report_html_is_self_contained_with_the_markdown_tables() {
    let out = written("html");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    // The same tables as report.md (one per Markdown separator line), plus provenance.
    let md_tables = md.lines().filter(|l| l.starts_with("|---")).count();
    assert_eq!(md_tables, 3, "{md}");
    assert_eq!(html.matches("<table").count(), md_tables + 1);
    // Self-contained: no external resource.
    for external in ["src=\"http", "href=\"http", "<link", "<script"] {
        assert!(!html.contains(external), "{external} in report.html");
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// Runs when the build found a headless browser on PATH (`build.rs` sets the cfg
/// `headless_browser`; `.ci/run` installs Debian's `chromium-headless-shell`); without one
/// it is listed as ignored, never as passed.
#[test]
#[cfg_attr(
    not(headless_browser),
    ignore = "no headless browser (chromium-headless-shell, chromium, google-chrome) on PATH at build time"
)]
fn grid_report_renders_in_a_headless_browser() {
    let t0 = Instant::now();
    let out = std::env::temp_dir().join(format!("curadiff-report-browser-{}", std::process::id()));
    tiny_grid(&out);
    let arms: Vec<String> = ARMS.iter().map(|a| a.to_string()).collect();
    write_report(&out, &arms, &Targets::default()).unwrap();
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    let html_path = out.join("report.html");
    let html = std::fs::read_to_string(&html_path).unwrap();
    // The same tables as report.md: one per Markdown separator line.
    let md_tables = md.lines().filter(|l| l.starts_with("|---")).count();
    assert_eq!(md_tables, 3, "{md}");
    // Self-contained: no external resource.
    for external in ["src=\"http", "href=\"http", "<link", "<script"] {
        assert!(!html.contains(external), "{external} in report.html");
    }
    let browser = browser().expect(
        "the build found a headless browser on PATH, but it is gone: reinstall it \
         (apt-get install chromium-headless-shell) or rebuild",
    );
    // A probe copy of the page writes each image's decoded size into the DOM on load.
    let probe = out.join("probe.html");
    let script = "<pre id=\"probe\"></pre><script>window.addEventListener('load', () => { \
                  document.getElementById('probe').textContent = [...document.images] \
                  .map(i => i.complete + ':' + i.naturalWidth + 'x' + i.naturalHeight).join(' '); \
                  });</script></body>";
    std::fs::write(&probe, html.replace("</body>", script)).unwrap();
    let dom = render(&browser, &probe, &["--dump-dom"]);
    // Tables: the three of report.md plus the provenance; arm names and values in cells.
    assert_eq!(dom.matches("<table").count(), md_tables + 1, "{dom}");
    for arm in ARMS {
        assert!(dom.contains(&format!("<td>{arm}</td>")), "{arm} cell");
    }
    // The final classification of `full` over seeds 0 and 1 (0.4 + 0.1024, and 0.05 more):
    // mean and sample standard deviation.
    let q0 = 0.4 + 4096.0 / 40_000.0;
    let cell = format!("{:.3} ± {:.3}", q0 + 0.025, 0.05 / 2f64.sqrt());
    assert!(
        dom.contains(&format!("<td class=\"n\">{cell}</td>")),
        "{cell}"
    );
    assert!(dom.contains("ajest seed 2: diverged"));
    assert!(dom.contains("id=\"provenance\"") && dom.contains("eval_samples = 500"));
    // The SVG plots carry their titles, axis labels and legends.
    let texts = svg_texts(&dom);
    for want in [
        "mandala vs images trained (mean ± std over seeds)",
        "images trained",
        "mandala",
        "exact loss",
        "full",
        "ajest",
    ] {
        assert!(texts.iter().any(|t| t == want), "{want} not in {texts:?}");
    }
    assert_eq!(dom.matches("<svg").count(), 3);
    // Every picture decoded at its size.
    let probe_text = dom
        .split("<pre id=\"probe\">")
        .nth(1)
        .and_then(|s| s.split("</pre>").next())
        .unwrap_or_default();
    let want = format!("true:{}x{}", PIC.0, PIC.1);
    assert_eq!(probe_text, [want.as_str(), want.as_str()].join(" "));
    // The screenshot is not blank and shows the first two arms' line colours.
    let shot = out.join("shot.png");
    render(
        &browser,
        &html_path,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1200,2000",
        ],
    );
    let (rgb, w, h) = decode_rgb(&std::fs::read(&shot).unwrap()).unwrap();
    assert_eq!((w, h), (1200, 2000));
    let lum: Vec<f64> = rgb
        .chunks(3)
        .map(|p| (p[0] as f64 + p[1] as f64 + p[2] as f64) / 3.0)
        .collect();
    let mean = lum.iter().sum::<f64>() / lum.len() as f64;
    let var = lum.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / lum.len() as f64;
    let dark = lum.iter().filter(|&&l| l < 128.0).count();
    assert!(
        var > 100.0 && dark > 5_000,
        "variance {var}, {dark} dark pixels"
    );
    for (i, c) in COLORS.iter().take(2).enumerate() {
        let n = rgb
            .chunks(3)
            .filter(|p| (0..3).all(|k| (p[k] as i32 - c[k] as i32).abs() <= 12))
            .count();
        assert!(n > 200, "colour of arm {i}: {n} pixels");
    }
    println!(
        "rendered with {} in {:.1} s",
        browser.display(),
        t0.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&out);
}
