//! Walking a module's float parameters in declaration order: flatten to host vectors or
//! device tensors, and write them back. The optimiser, the EMA, checkpoints and the fused
//! engines use these.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};

use crate::error::{Error, Result};

/// One parameter as host data.
#[derive(Debug, Clone, PartialEq)]
pub struct HostParam {
    /// Dotted path of module fields, e.g. `hidden.2.weight`.
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

struct Collect {
    path: Vec<String>,
    out: Vec<HostParam>,
    failed: Option<String>,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let name = self.path.join(".");
        match t.clone().try_into_vec_as::<f32>() {
            Ok(data) => self.out.push(HostParam {
                name,
                shape: t.dims().to_vec(),
                data,
            }),
            Err(e) => self.failed = Some(format!("cannot read parameter {name}: {e:?}")),
        }
    }
}

/// All float parameters of `module`, in declaration order.
pub fn to_host<M: Module>(module: &M) -> Result<Vec<HostParam>> {
    let mut c = Collect {
        path: Vec::new(),
        out: Vec::new(),
        failed: None,
    };
    module.visit(&mut c);
    match c.failed {
        Some(e) => Err(Error::Model(e)),
        None => Ok(c.out),
    }
}

struct Load<'a> {
    path: Vec<String>,
    params: &'a [HostParam],
    next: usize,
    failed: Option<String>,
}

impl ModuleMapper for Load<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let name = self.path.join(".");
        let Some(src) = self.params.get(self.next) else {
            self.failed
                .get_or_insert(format!("parameter {name} is missing from the stored set"));
            return param;
        };
        self.next += 1;
        let dims = param.val().dims();
        if src.name != name || src.shape != dims {
            self.failed.get_or_insert(format!(
                "stored parameter {} {:?} does not match the model's {name} {dims:?}",
                src.name, src.shape
            ));
            return param;
        }
        let data = src.data.clone();
        param.map(|t| {
            let (device, grad) = (t.device(), t.is_require_grad());
            let fresh = Tensor::<D>::from_data(TensorData::new(data, dims), &device);
            if grad {
                fresh.require_grad()
            } else {
                fresh
            }
        })
    }
}

/// `module` with its parameters replaced by `params` (same names and shapes, same order).
pub fn from_host<M: Module>(module: M, params: &[HostParam]) -> Result<M> {
    let mut l = Load {
        path: Vec::new(),
        params,
        next: 0,
        failed: None,
    };
    let module = module.map(&mut l);
    if let Some(e) = l.failed {
        return Err(Error::Model(e));
    }
    if l.next != params.len() {
        return Err(Error::Model(format!(
            "stored set has {} parameters, the model {}",
            params.len(),
            l.next
        )));
    }
    Ok(module)
}

struct Flat {
    out: Vec<Tensor<1>>,
}

impl ModuleVisitor for Flat {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let n = t.shape().num_elements();
        self.out.push(t.inner().reshape([n]));
    }
}

/// The parameters as flat plain (non-autodiff) tensors on their device.
pub fn to_flat<M: Module>(module: &M) -> Vec<Tensor<1>> {
    let mut f = Flat { out: Vec::new() };
    module.visit(&mut f);
    f.out
}

struct Assign<'a> {
    flat: &'a [Tensor<1>],
    next: usize,
}

impl ModuleMapper for Assign<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(src) = self.flat.get(self.next) else {
            return param;
        };
        self.next += 1;
        let src = src.clone();
        param.map(|t| {
            let (dims, grad) = (t.dims(), t.is_require_grad());
            let fresh = Tensor::<D>::from_inner(src.reshape(dims));
            if t.is_autodiff() && grad {
                fresh.require_grad()
            } else if t.is_autodiff() {
                fresh
            } else {
                fresh.inner()
            }
        })
    }
}

/// `module` with its parameters replaced by flat tensors from [`to_flat`] (same order).
pub fn from_flat<M: Module>(module: M, flat: &[Tensor<1>]) -> M {
    module.map(&mut Assign { flat, next: 0 })
}
