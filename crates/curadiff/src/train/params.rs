//! The checkpoint groups of a burn learner ("net", "ema", "adam_m", "adam_v") on top of the
//! parameter walks of [`crate::models::params`].

use std::collections::BTreeMap;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};

use super::optim::Adam;
use crate::error::{Error, Result};
pub use crate::models::params::{from_flat, from_host, to_flat, to_host, HostParam};

/// The checkpoint groups of a burn learner: "net" (its parameters), "ema", "adam_m" and
/// "adam_v" (flat tensors, named after the network's parameters).
pub fn learner_groups<M: Module>(
    net: &M,
    ema: Option<&[Tensor<1>]>,
    adam: &Adam,
) -> Result<BTreeMap<String, Vec<HostParam>>> {
    let host = to_host(net)?;
    let flat = |v: &[Tensor<1>], what: &str| -> Result<Vec<HostParam>> {
        v.iter()
            .zip(&host)
            .map(|(t, p)| {
                Ok(HostParam {
                    name: p.name.clone(),
                    shape: p.shape.clone(),
                    data: t
                        .clone()
                        .try_into_vec_as::<f32>()
                        .map_err(|e| Error::Model(format!("cannot read {what}: {e:?}")))?,
                })
            })
            .collect()
    };
    let mut g = BTreeMap::new();
    if let Some(ema) = ema {
        g.insert("ema".into(), flat(ema, "the EMA")?);
    }
    g.insert("adam_m".into(), flat(&adam.m, "Adam's first moment")?);
    g.insert("adam_v".into(), flat(&adam.v, "Adam's second moment")?);
    g.insert("net".into(), host);
    Ok(g)
}

/// Restores a burn learner from [`learner_groups`]: returns the network; the EMA (when the
/// learner keeps one) and Adam's moments are set on `device`, with `adam_t` steps taken.
pub fn restore_learner<M: Module>(
    net: M,
    ema: &mut Option<Vec<Tensor<1>>>,
    adam: &mut Adam,
    g: &BTreeMap<String, Vec<HostParam>>,
    adam_t: u64,
    device: &Device,
) -> Result<M> {
    let get = |k: &str| {
        g.get(k)
            .ok_or_else(|| Error::Model(format!("checkpoint has no '{k}' tensors")))
    };
    let net = from_host(net, get("net")?)?;
    let flat = |ps: &[HostParam]| -> Vec<Tensor<1>> {
        ps.iter()
            .map(|p| {
                Tensor::<1>::from_data(TensorData::new(p.data.clone(), [p.data.len()]), device)
            })
            .collect()
    };
    if ema.is_some() {
        *ema = Some(flat(get("ema")?));
    }
    adam.m = flat(get("adam_m")?);
    adam.v = flat(get("adam_v")?);
    adam.t = adam_t;
    Ok(net)
}
