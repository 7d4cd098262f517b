//! EDM preconditioning (Karras et al. 2022, Table 1):
//! D(x; σ) = c_skip(σ)·x + c_out(σ)·F(c_in(σ)·x; c_noise(σ)).

/// The four preconditioning coefficients at one σ.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Precond {
    pub c_skip: f64,
    pub c_out: f64,
    pub c_in: f64,
    pub c_noise: f64,
}

impl Precond {
    /// c_skip = σ_d²/(σ²+σ_d²), c_out = σσ_d/sqrt(σ²+σ_d²), c_in = 1/sqrt(σ²+σ_d²),
    /// c_noise = ln(σ)/4.
    pub fn new(sigma: f64, sigma_data: f64) -> Self {
        let s2 = sigma * sigma + sigma_data * sigma_data;
        Self {
            c_skip: sigma_data * sigma_data / s2,
            c_out: sigma * sigma_data / s2.sqrt(),
            c_in: 1.0 / s2.sqrt(),
            c_noise: sigma.ln() / 4.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coefficients_match_edm_table() {
        // Hand-computed at σ = σ_data = 0.5: c_skip = 1/2, c_out = 0.25/sqrt(0.5),
        // c_in = 1/sqrt(0.5), c_noise = ln(0.5)/4.
        let p = Precond::new(0.5, 0.5);
        assert!((p.c_skip - 0.5).abs() < 1e-15);
        assert!((p.c_out - 0.353_553_390_593_273_8).abs() < 1e-15);
        assert!((p.c_in - std::f64::consts::SQRT_2).abs() < 1e-15);
        assert!((p.c_noise + 0.173_286_795_139_986_3).abs() < 1e-15);
        // Unit-variance target: c_skip² σ_d² + c_out²... the EDM identity
        // c_out² = σ_d² (1 − c_skip) holds for all σ.
        for s in [0.002, 0.1, 1.0, 80.0] {
            let p = Precond::new(s, 0.5);
            assert!((p.c_out * p.c_out - 0.25 * (1.0 - p.c_skip)).abs() < 1e-12);
        }
    }
}
