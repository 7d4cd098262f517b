//! Class reweighting for pruned data (reference §B.1 step 3): class weights found by
//! distributionally robust optimisation against a frozen reference model ([`dro::Dro`]),
//! online during training, or frozen after a proxy run (`train.class_weights`).
pub mod config;
pub mod dro;
