use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use curadiff::diffusion::denoiser::ToyDenoiser;
use curadiff::diffusion::loss::*;
use curadiff::models::mlp::MlpConfig;
use curadiff::train::optim::Adam;
fn main() {
    let dev = Device::flex().autodiff();
    let width: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(64);
    let mut den = ToyDenoiser { net: MlpConfig { width, layers: 4 }.init(0, &dev), sigma_data: 0.5 };
    let mut adam = Adam::new(0.9, 0.99, 1e-8);
    let b = 4096;
    let x: Vec<f32> = (0..b * 2).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
    let sigma: Vec<f64> = (0..b).map(|i| 0.01 + (i % 100) as f64 / 50.0).collect();
    let ft: Vec<f32> = (0..b * 2).map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5).collect();
    let mut times = vec![];
    for step in 0..40 {
        let t = std::time::Instant::now();
        let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [b, 2]), &dev);
        let ftt = Tensor::<2>::from_data(TensorData::new(ft.clone(), [b, 2]), &dev);
        let f = den.raw(xt, &sigma);
        let l = per_example(f, ftt, &sigma, 0.5, Weighting::Score);
        let loss = l.weighted.mean();
        let grads = GradientsParams::from_grads(loss.backward(), &den.net);
        den.net = adam.step(den.net, &grads, 0.01);
        let lv: f32 = loss.into_scalar();
        if step >= 5 { times.push(t.elapsed().as_secs_f64()); }
        if step % 10 == 0 { println!("loss {lv}"); }
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("median step {:.2} ms", times[times.len() / 2] * 1e3);
}
