//! Data sources: the analytic 2-D tree toy, array files, and labelled image sets (IDX
//! Fashion-MNIST, PNG folders, `.npy`), and their corruptions.
pub mod corrupt;
pub mod fastmath;
pub mod fingerprint;
pub mod idx;
pub mod images;
pub mod long_tail;
pub mod mt19937;
pub mod npy;
pub mod subset;
pub mod toy2d;
pub mod windows;
