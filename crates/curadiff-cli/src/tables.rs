//! The demo's text tables: exact toy metrics per guidance setting, per seed and over seeds.

use curadiff::toyjob;

type Metric = (&'static str, fn(&toyjob::Column) -> f64);

const METRICS: [Metric; 7] = [
    ("classification", |c| c.samples.classification),
    ("mandala", |c| c.samples.mandala),
    ("mmd", |c| c.samples.mmd),
    ("mean loglik", |c| c.samples.mean_loglik),
    ("ode_l2", |c| c.model.ode_l2),
    ("exact loss (main)", |c| c.model.loss),
    ("exact loss outer", |c| c.model.loss_outer),
];

/// Mean ± std over seeds of every metric, one column per guidance setting.
pub fn seeds_table(seeds: &[u64], all: &[Vec<toyjob::Column>]) -> String {
    let mut s = format!("mean ± std over seeds {seeds:?}\n{:<22}", "metric");
    for c in &all[0] {
        s += &format!("{:>24}", format!("{} w={}", c.name, c.guidance));
    }
    s.push('\n');
    for (name, f) in METRICS {
        s += &format!("{name:<22}");
        for i in 0..all[0].len() {
            let v: Vec<f64> = all.iter().map(|cols| f(&cols[i])).collect();
            let (m, sd) = toyjob::mean_std(&v);
            s += &format!("{:>24}", format!("{m:.4} ± {sd:.4}"));
        }
        s.push('\n');
    }
    s
}

pub fn demo_table(cols: &[toyjob::Column]) -> String {
    let mut s = format!("{:<22}", "metric");
    for c in cols {
        s += &format!("{:>16}", format!("{} w={}", c.name, c.guidance));
    }
    s.push('\n');
    for (name, f) in METRICS {
        s += &format!("{name:<22}");
        for c in cols {
            s += &format!("{:>16.5}", f(c));
        }
        s.push('\n');
    }
    for c in cols {
        s += &format!("plot {}: {}\n", c.name, c.plot.display());
    }
    s
}
