//! Offline pruning, the first half of "Pruning then Reweighting" (arXiv 2409.19128; reference
//! §B.1 steps 1–2): embed every example of the pool with a surrogate feature network, score
//! each by a criterion, and keep the best-scored fraction as a coreset (a subset file that
//! `data.subset` reads). The class weights of step 3 are [`crate::curation::reweight`].
//!
//! ```text
//! pool ──feature_net──► features (sharded: one file per shard, merged) ──criterion──► scores
//!      ──select (keep ratio, per class, minimum per class)──► subset file (data.subset)
//! ```
//! Every file carries the pool's fingerprint in its sidecar ([`crate::data::subset`]'s
//! mechanism) and the seconds of curation so far, which the subset hands to the run's
//! `curate` phase.
pub mod criterion;
pub mod feature_net;
pub mod features;
pub mod gaussian;
pub mod kcenter;
pub mod moderate;
pub mod scores;
pub mod select;
pub mod shard;
