//! `report.html`: the blocks of a report (the same tables as `report.md`) as one
//! self-contained page: plots inline as SVG, pictures as base64 PNG data URIs, the style in
//! the page, no scripts and nothing fetched; then a provenance block (config, commit, CPU,
//! date, seconds).

use std::fmt::Write as _;

use super::doc::{Block, Table};

/// Where a report comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Provenance {
    /// The config text (the grid file as run, or the run's `config.toml`).
    pub config: String,
    /// The source commit (`git rev-parse HEAD` where the report was written), or a note.
    pub commit: String,
    /// The CPU model from `/proc/cpuinfo`.
    pub cpu: String,
    /// When the report was written (UTC).
    pub date: String,
    /// What the seconds count, and how many.
    pub seconds_label: String,
    pub seconds: Option<f64>,
}

impl Provenance {
    /// The provenance of a report written now from `config`.
    pub fn collect(config: String, seconds_label: &str, seconds: Option<f64>) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Self {
            config,
            commit: git_commit(),
            cpu: super::image_speed::cpu_name(),
            date: utc_date(now),
            seconds_label: seconds_label.to_string(),
            seconds,
        }
    }
}

/// `git rev-parse HEAD` in the working directory (with "+ local changes" when tracked files
/// differ from it), or a note saying why there is none.
fn git_commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "HEAD"]) {
        Some(c) if !c.is_empty() => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{c} + local changes")
            } else {
                c
            }
        }
        _ => "unknown (not written from a git checkout)".into(),
    }
}

/// Seconds since 1970 as `YYYY-MM-DD HH:MM:SS UTC` (proleptic Gregorian calendar).
pub fn utc_date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Text with `&`, `<`, `>`, `"` and `'` escaped for HTML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Escaped text with `code` spans (between backticks) as `<code>`.
fn inline(s: &str) -> String {
    s.split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 {
                format!("<code>{}</code>", escape(part))
            } else {
                escape(part)
            }
        })
        .collect()
}

/// Standard base64 (RFC 4648, with padding).
pub fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// SVG text ready to inline: without an XML declaration or doctype before `<svg`.
fn svg_inline(svg: &str) -> &str {
    svg.find("<svg").map_or("", |i| &svg[i..])
}

fn table(t: &Table) -> String {
    let mut h = String::from("<table>\n<thead><tr>");
    for (c, cell) in t.head.iter().enumerate() {
        let class = if c < t.left { "" } else { " class=\"n\"" };
        let _ = write!(h, "<th{class}>{}</th>", inline(cell));
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for r in &t.rows {
        h.push_str("<tr>");
        for (c, cell) in r.iter().enumerate() {
            let class = if c < t.left { "" } else { " class=\"n\"" };
            let _ = write!(h, "<td{class}>{}</td>", inline(cell));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody>\n</table>\n");
    h
}

/// One block as HTML.
fn block(b: &Block) -> String {
    match b {
        Block::Title(t) => format!("<h1>{}</h1>\n", inline(t)),
        Block::Heading(t) => format!("<h2>{}</h2>\n", inline(t)),
        Block::Para(t) => format!("<p>{}</p>\n", inline(t)),
        Block::Table(t) => table(t),
        Block::Plot { caption, svg, .. } => format!(
            "<figure class=\"plot\">\n{}\n<figcaption>{}</figcaption>\n</figure>\n",
            svg_inline(svg).trim_end(),
            inline(caption)
        ),
        Block::Picture { caption, png, .. } => format!(
            "<figure class=\"picture\">\n<img alt=\"{}\" src=\"data:image/png;base64,{}\">\n\
             <figcaption>{}</figcaption>\n</figure>\n",
            escape(caption),
            base64(png),
            inline(caption)
        ),
        Block::List(items) => {
            let li: String = items
                .iter()
                .map(|i| format!("<li>{}</li>\n", inline(i)))
                .collect();
            format!("<ul>\n{li}</ul>\n")
        }
        Block::Pre(t) => format!("<pre>{}</pre>\n", escape(t.trim_end())),
    }
}

const STYLE: &str = "body{font-family:sans-serif;margin:0;color:#222;background:#fff}\
main{max-width:1100px;margin:0 auto;padding:1em 1.5em 3em}\
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}\
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}\
th{background:#f3f3f3}.n{text-align:right;font-variant-numeric:tabular-nums}\
figure{margin:1em 0}figure svg,figure img{max-width:100%;height:auto;display:block}\
figure.picture img{image-rendering:pixelated;border:1px solid #ddd}\
figcaption{font-size:.85em;color:#555;margin-top:.3em}\
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:.85em}\
code{background:#f3f3f3;padding:0 .2em}";

/// The whole page: the blocks, then the provenance.
pub fn page(title: &str, blocks: &[Block], prov: &Provenance) -> String {
    let mut h = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n",
        escape(title)
    );
    for b in blocks {
        h.push_str(&block(b));
    }
    let seconds = prov.seconds.map_or("—".to_string(), |s| format!("{s:.1}"));
    let rows = vec![
        vec!["commit".to_string(), prov.commit.clone()],
        vec!["CPU".to_string(), prov.cpu.clone()],
        vec!["written".to_string(), prov.date.clone()],
        vec![format!("seconds ({})", prov.seconds_label), seconds],
    ];
    h.push_str("<section id=\"provenance\">\n<h2>Provenance</h2>\n");
    h.push_str(&table(&Table {
        head: vec!["what".into(), "value".into()],
        left: 2,
        rows,
    }));
    let _ = write!(
        h,
        "<details open>\n<summary>config</summary>\n<pre>{}</pre>\n</details>\n</section>\n",
        escape(prov.config.trim_end())
    );
    h.push_str("</main>\n</body>\n</html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), enc, "{raw}");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(utc_date(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_date(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_date(1_796_300_000), "2026-12-03 12:13:20 UTC");
    }

    #[test]
    fn text_is_escaped_and_code_spans_marked() {
        assert_eq!(escape("a<b&c>\"'"), "a&lt;b&amp;c&gt;&quot;&#39;");
        assert_eq!(inline("on `x<y`, done"), "on <code>x&lt;y</code>, done");
    }

    fn prov() -> Provenance {
        Provenance {
            config: "seeds = [0]\n[[arm]]\nname = \"<&>\"\n".into(),
            commit: "abc123".into(),
            cpu: "Test CPU".into(),
            date: utc_date(0),
            seconds_label: "training".into(),
            seconds: Some(12.34),
        }
    }

    #[test]
    fn page_has_tables_pictures_and_provenance() {
        let blocks = [
            Block::Title("Grid report".into()),
            Block::Table(Table {
                head: vec!["arm".into(), "FD".into()],
                left: 1,
                rows: vec![vec!["x<y&z>".into(), "1.500 ± 0.100".into()]],
            }),
            Block::Plot {
                caption: "FD vs images".into(),
                stem: "FD-vs-nimg".into(),
                svg: "<?xml version=\"1.0\"?>\n<svg width=\"10\"><text>FD</text></svg>\n".into(),
            },
            Block::Picture {
                caption: "final".into(),
                path: "final.png".into(),
                png: b"foo".to_vec(),
            },
        ];
        let h = page("Grid report", &blocks, &prov());
        assert!(h.starts_with("<!DOCTYPE html>"));
        assert!(h.contains("<td>x&lt;y&amp;z&gt;</td><td class=\"n\">1.500 ± 0.100</td>"));
        assert!(!h.contains("x<y"));
        assert!(h.contains("<svg width=\"10\"><text>FD</text></svg>"));
        assert!(!h.contains("<?xml"));
        assert!(h.contains("src=\"data:image/png;base64,Zm9v\""));
        assert!(h.contains("<td>abc123</td>") && h.contains("<td>Test CPU</td>"));
        assert!(h.contains("<td>seconds (training)</td><td>12.3</td>"));
        assert!(h.contains("name = &quot;&lt;&amp;&gt;&quot;"));
        // Self-contained: nothing is fetched.
        for external in ["src=\"http", "href=", "<script", "<link"] {
            assert!(!h.contains(external), "{external}");
        }
    }
}
