//! Data sources: the analytic 2-D tree toy and array files.
pub mod fastmath;
pub mod mt19937;
pub mod npy;
pub mod toy2d;
