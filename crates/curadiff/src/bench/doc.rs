//! A report as a list of blocks (headings, paragraphs, tables, plots, pictures), built once
//! and rendered twice: to Markdown here (`report.md`) and to one self-contained HTML page in
//! [`super::report_html`] (`report.html`), so both carry the same tables.

use std::fmt::Write as _;

/// A table: header cells, rows of cells, and how many leading columns are left-aligned (the
/// others are numbers, right-aligned).
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub head: Vec<String>,
    pub left: usize,
    pub rows: Vec<Vec<String>>,
}

/// One block of a report. Text is plain (no markup) except for `code` spans in backticks.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// The page title (`#`).
    Title(String),
    /// A section heading (`##`).
    Heading(String),
    Para(String),
    Table(Table),
    /// A plot drawn by `plot::lines`: its caption, the file stem beside the report (Markdown
    /// links `STEM.png` and `STEM.svg`) and the SVG text (inlined in HTML).
    Plot {
        caption: String,
        stem: String,
        svg: String,
    },
    /// A PNG picture: caption, path relative to the report (Markdown) and the bytes
    /// (embedded in HTML as a data URI).
    Picture {
        caption: String,
        path: String,
        png: Vec<u8>,
    },
    /// A bulleted list.
    List(Vec<String>),
    /// Preformatted text (a config file, warnings).
    Pre(String),
}

/// The blocks as Markdown.
pub fn to_markdown(blocks: &[Block]) -> String {
    let mut md = String::new();
    for (i, b) in blocks.iter().enumerate() {
        if i > 0 {
            md.push('\n');
        }
        match b {
            Block::Title(t) => {
                let _ = writeln!(md, "# {t}");
            }
            Block::Heading(t) => {
                let _ = writeln!(md, "## {t}");
            }
            Block::Para(t) => {
                let _ = writeln!(md, "{t}");
            }
            Block::Table(t) => {
                let _ = writeln!(md, "| {} |", t.head.join(" | "));
                md.push('|');
                for c in 0..t.head.len() {
                    md.push_str(if c < t.left { "---|" } else { "---:|" });
                }
                md.push('\n');
                for r in &t.rows {
                    let _ = writeln!(md, "| {} |", r.join(" | "));
                }
            }
            Block::Plot { caption, stem, .. } => {
                let _ = writeln!(md, "![{caption}]({stem}.png) ([svg]({stem}.svg))");
            }
            Block::Picture { caption, path, .. } => {
                let _ = writeln!(md, "![{caption}]({path})");
            }
            Block::List(items) => {
                for it in items {
                    let _ = writeln!(md, "- {it}");
                }
            }
            Block::Pre(t) => {
                let _ = writeln!(md, "```\n{}\n```", t.trim_end());
            }
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_tables_align_numbers_right() {
        let md = to_markdown(&[
            Block::Title("Grid report".into()),
            Block::Para("intro".into()),
            Block::Heading("At the end".into()),
            Block::Table(Table {
                head: vec!["arm".into(), "seeds".into(), "FD".into()],
                left: 1,
                rows: vec![vec!["full".into(), "2".into(), "1.5 ± 0.1".into()]],
            }),
            Block::List(vec!["a seed 1: boom".into()]),
        ]);
        assert_eq!(
            md,
            "# Grid report\n\nintro\n\n## At the end\n\n| arm | seeds | FD |\n|---|---:|---:|\n\
             | full | 2 | 1.5 ± 0.1 |\n\n- a seed 1: boom\n"
        );
    }
}
