//! The library's typed errors. Each message names the bad input and says how to fix it.

use std::path::PathBuf;

/// Everything that can go wrong in curadiff's library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {why}")]
    BadFile { path: PathBuf, why: String },
    #[error("unknown preset '{name}'; valid presets: {valid}")]
    UnknownPreset { name: String, valid: String },
    #[error("unknown config key '{key}'; valid keys: {valid}")]
    UnknownKey { key: String, valid: String },
    #[error("config field '{field}': {why}")]
    InvalidValue { field: String, why: String },
    #[error("{0}")]
    Config(String),
    #[error(
        "run directory {dir} holds a different config ({diff}); use a new --out directory, \
         or re-run with the same preset and --set values to resume"
    )]
    ConfigMismatch { dir: PathBuf, diff: String },
    #[error("checkpoint {path} is unusable: {why}. {hint}")]
    BadCheckpoint {
        path: PathBuf,
        why: String,
        hint: String,
    },
    #[error(
        "training diverged: the loss is {value} at step {step}; the last good checkpoint \
         (step {last_good}) is kept in {dir}. Lower the learning rate (--set train.lr=...) \
         and re-run."
    )]
    NonFiniteLoss {
        step: u64,
        value: f64,
        last_good: u64,
        dir: PathBuf,
    },
    #[error("{0}")]
    Model(String),
}

/// Shorthand for the library's results.
pub type Result<T> = std::result::Result<T, Error>;
