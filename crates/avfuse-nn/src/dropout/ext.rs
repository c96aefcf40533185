//! The fused dropout kernel as a Burn backend extension.
//!
//! [`MaskedAffineOps`] has a native implementation for Flex (Burn's CPU backend): the
//! multi-threaded, vectorised kernel of [`super::kernel`], writing in place when the input
//! buffer is not shared. Its Autodiff implementation saves no mask: the backward pass
//! re-runs the kernel on the incoming gradient with the same seed
//! (`dx = keep ? kept_scale * dy : 0`).
//!
//! Under the `cube` feature (turned on by `cuda` or `wgpu`), CubeCL devices run the CubeCL
//! kernel of [`super::cube`] (through Burn's Fusion wrapper, as an opaque custom operation),
//! with the same Autodiff backward.
//!
//! Everything else (f64 tensors on a CubeCL device, tensors of `2^32` elements or more on
//! one, other backends) takes [`masked_affine`]'s portable path: the same mask, computed on
//! the host from the same hash and uploaded as a `[outer, 1, inner]` tensor, then ordinary
//! tensor ops (differentiated by Autodiff like any other op).

use burn::backend::{Backend, Dispatch, Flex, backend_extension, tensor::FloatTensor};
use burn::tensor::{DType, Tensor, TensorData};
use burn_autodiff::{
    Autodiff,
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind, unary},
};
use burn_flex::FlexTensor;

use super::kernel::{self, MaskedAffine};

/// The dropout family's one kernel, supplied by a backend (see [`super::kernel`]).
#[backend_extension(
    Flex,
    Cube: cfg(feature = "cube"),
    Fusion: cfg(feature = "cube"),
    Autodiff
)]
pub trait MaskedAffineOps: Backend {
    /// `y = keep(mask_index(i)) ? kept_scale * x + kept_bias : dropped_value`, same shape
    /// and dtype as `x`.
    #[fusion(dtype = x, shape = x)]
    fn masked_affine(x: FloatTensor<Self>, op: MaskedAffine) -> FloatTensor<Self>;
}

impl MaskedAffineOps for Flex {
    fn masked_affine(x: FloatTensor<Flex>, op: MaskedAffine) -> FloatTensor<Flex> {
        flex_masked_affine(x, &op)
    }
}

fn flex_masked_affine(x: FlexTensor, op: &MaskedAffine) -> FlexTensor {
    match x.dtype() {
        DType::F32 => flex_typed::<f32>(x, op),
        DType::F64 => flex_typed::<f64>(x, op),
        DType::BF16 => flex_typed::<half::bf16>(x, op),
        DType::F16 => flex_typed::<half::f16>(x, op),
        // Float tensors on Flex are one of the four above; anything else is a Burn change.
        other => panic!("masked_affine: unsupported float dtype {other:?}"),
    }
}

fn flex_typed<E>(x: FlexTensor, op: &MaskedAffine) -> FlexTensor
where
    E: kernel::KernelFloat + burn::tensor::Element + bytemuck::Pod,
{
    let n = x.layout().shape().num_elements();
    // The tensor's elements must be the first `n` of its buffer, in order. The buffer itself
    // may be longer (a view that kept the start of a bigger tensor): only `[..n]` is touched.
    let mut x = if x.is_contiguous() && x.layout().contiguous_offsets() == Some((0, n)) {
        x
    } else {
        x.to_contiguous()
    };
    // In place when nobody else holds the buffer (the usual case in a forward pass: the
    // backward needs only the seed, not the input).
    if let Some(buf) = x.try_storage_mut::<E>() {
        kernel::apply_in_place(&mut buf[..n], op);
        return x;
    }
    let shape = x.layout().shape().clone();
    let src: &[E] = &x.storage::<E>()[..n];
    // Uninitialised output, first touched by the kernel's threads: no zero-fill pass and the
    // page faults of a fresh buffer are spread over the threads.
    let mut out: Vec<E> = Vec::with_capacity(src.len());
    kernel::apply_uninit(src, &mut out.spare_capacity_mut()[..src.len()], op);
    // SAFETY: `apply_uninit` initialised all `src.len()` elements (it asserts the length).
    unsafe { out.set_len(src.len()) };
    FlexTensor::new(
        burn::tensor::Bytes::from_elems(out),
        burn_flex::Layout::contiguous(shape),
        x.dtype(),
    )
}

impl<B: Backend + MaskedAffineOps, C: CheckpointStrategy> MaskedAffineOps for Autodiff<B, C> {
    fn masked_affine(x: FloatTensor<Self>, op: MaskedAffine) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct MaskedAffineBackward;

        impl<B: Backend + MaskedAffineOps> Backward<B, 1> for MaskedAffineBackward {
            type State = MaskedAffine;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                let op = ops.state.backward();
                unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                    B::masked_affine(grad, op)
                });
            }
        }

        let guard = x.node();
        let y = B::masked_affine(x.into_primitive(), op);
        match MaskedAffineBackward
            .prepare::<C>([guard])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(op, y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}

/// Whether a tensor on `device` with this dtype runs a native kernel (Flex: always; a CubeCL
/// device under the `cube` feature: see [`super::cube::supports`]).
fn has_native_kernel(device: &burn::tensor::Device, dtype: DType, op: &MaskedAffine) -> bool {
    match device.clone().without_autodiff().as_dispatch() {
        burn::backend::DispatchDevice::Flex(_) => true,
        #[cfg(feature = "cube")]
        burn::backend::DispatchDevice::Cube(_) => super::cube::supports(dtype, op),
        #[allow(unreachable_patterns)]
        _ => {
            let _ = (dtype, op);
            false
        }
    }
}

/// Apply the kernel to a tensor of any rank on any device. `op.layout.numel()` must equal
/// the tensor's element count (the callers in this module derive it from the shape).
pub fn masked_affine<const D: usize>(x: Tensor<D>, op: MaskedAffine) -> Tensor<D> {
    debug_assert_eq!(x.shape().num_elements(), op.layout.numel());
    if op.layout.numel() == 0 {
        return x;
    }
    if has_native_kernel(&x.device(), x.dtype(), &op) {
        return Tensor::from_dispatch(<Dispatch as MaskedAffineOps>::masked_affine(
            x.into_dispatch(),
            op,
        ));
    }
    masked_affine_portable(x, op)
}

/// Any-backend path: host-computed mask, then `x * scale + offset` with
/// `scale = mask * kept_scale` and `offset = mask * kept_bias + (1 - mask) * dropped_value`,
/// both `[outer, 1, inner]` and broadcast over `bcast`.
pub fn masked_affine_portable<const D: usize>(x: Tensor<D>, op: MaskedAffine) -> Tensor<D> {
    let device = x.device();
    let shape = x.shape();
    let l = op.layout;
    let mask = op.mask();
    let scale: Vec<f32> = mask.iter().map(|&m| m * op.kept_scale as f32).collect();
    let offset: Vec<f32> = mask
        .iter()
        .map(|&m| {
            if m == 1.0 {
                op.kept_bias as f32
            } else {
                op.dropped_value as f32
            }
        })
        .collect();
    let dtype = x.dtype();
    let scale =
        Tensor::<3>::from_data(TensorData::new(scale, [l.outer, 1, l.inner]), &device).cast(dtype);
    let offset =
        Tensor::<3>::from_data(TensorData::new(offset, [l.outer, 1, l.inner]), &device).cast(dtype);
    let y = x.reshape([l.outer, l.bcast, l.inner]) * scale + offset;
    y.reshape(shape)
}
