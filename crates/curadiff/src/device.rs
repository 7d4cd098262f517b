//! The compute device: the backend compiled in by cargo feature (`flex`, the CPU default;
//! `ndarray`, `wgpu`, `cuda`, `tch`).

use burn::tensor::Device;

/// The inference device of the compiled backend (first of flex, cuda, wgpu, tch, ndarray).
pub fn inference() -> Device {
    #[cfg(feature = "flex")]
    {
        Device::flex()
    }
    #[cfg(all(not(feature = "flex"), feature = "cuda"))]
    {
        Device::cuda(0)
    }
    #[cfg(all(not(feature = "flex"), not(feature = "cuda")))]
    {
        Device::default()
    }
}

/// The training device: [`inference`] wrapped in autodiff.
pub fn training() -> Device {
    inference().autodiff()
}
