//! The dropout family's kernel in CubeCL, for every CubeCL runtime (CUDA, ROCm, Vulkan,
//! wgpu, Metal): the GPU counterpart of [`super::kernel`], with the same keep decisions bit
//! for bit (the same 32-bit hash of the same mask index under the same keys).
//!
//! One launch reads `x` once and writes `y` once, `vector_size` elements per unit (the
//! widest load the runtime optimises for that divides the element count). No mask tensor
//! exists: each unit hashes the mask indices of its own elements. Compute is in `f32` for
//! `f32`, `f16` and `bf16` tensors (bf16/f16 widened, then rounded once, as on the CPU);
//! `f64` tensors and tensors of `2^32` elements or more take the portable path instead
//! (see [`super::ext::masked_affine`]), so this kernel indexes with `u32`.
//!
//! In place when the input buffer is not shared (the forward pass of a training step: the
//! backward needs only the seed), otherwise into a fresh contiguous buffer.

use burn::tensor::DType;
use burn_cubecl::cubecl;
use burn_cubecl::{
    CubeBackend, kernel::into_contiguous, ops::numeric::empty_device_contiguous_dtype,
    tensor::CubeTensor,
};
use cubecl::{
    calculate_cube_count_elemwise,
    prelude::*,
    std::tensor::layout::linear::{LinearView, LinearViewMut},
};

use super::ext::MaskedAffineOps;
use super::kernel::{Keys, MaskedAffine};

/// Host-side parameters of one launch (all scalars, uniform over the grid).
#[derive(CubeLaunch, CubeType)]
pub(crate) struct MaskParams {
    /// Hash key of the first 2^32 mask indices ([`Keys::block`] of high word 0).
    k0: u32,
    /// Second hash key.
    k1: u32,
    /// Keep when the hash is below this (`min(threshold, 2^32 - 1)`).
    thr: u32,
    /// 1 when `threshold == 2^32` (keep everything), else 0.
    keep_all: u32,
    /// `bcast * inner`: elements per mask row group.
    group: u32,
    /// Mask entries per row.
    inner: u32,
    kept_scale: f32,
    kept_bias: f32,
    dropped_value: f32,
}

/// "lowbias32" (see [`super::kernel`]): the same u32 bijection, wrapping multiplies.
#[cube]
fn lowbias32(x: u32) -> u32 {
    let a = x ^ (x >> 16u32);
    let b = a * 0x7feb_352du32;
    let c = b ^ (b >> 15u32);
    let d = c * 0x846c_a68bu32;
    d ^ (d >> 16u32)
}

/// `y = keep ? kept_scale * x + kept_bias : dropped_value`, element `e` of the row-major
/// `[outer, bcast, inner]` view reading mask entry `(e / (bcast*inner)) * inner + e % inner`.
#[cube(launch_unchecked, address_type = "dynamic")]
fn masked_affine_kernel<F: Float, N: Size>(
    input: LinearView<'_, Vector<F, N>>,
    mut output: LinearViewMut<'_, Vector<F, N>>,
    params: &MaskParams,
    #[define(F)] _dtype: ElemType,
) {
    if !output.is_in_bounds(ABSOLUTE_POS) {
        terminate!();
    }
    let x = Vector::<f32, N>::cast_from(input.read(ABSOLUTE_POS));
    let first = ABSOLUTE_POS as u32 * N::value() as u32;
    let keep_all = params.keep_all != 0u32;
    let mut keep = Vector::<bool, N>::empty();
    #[unroll]
    for lane in 0..N::value() {
        let e = first + comptime!(lane as u32);
        let m = (e / params.group) * params.inner + e % params.inner;
        let bits = lowbias32(lowbias32(m ^ params.k0) ^ params.k1);
        keep.insert(lane, keep_all || bits < params.thr);
    }
    let kept = x * Vector::new(params.kept_scale) + Vector::new(params.kept_bias);
    let y = select_many(keep, kept, Vector::new(params.dropped_value));
    output.write(ABSOLUTE_POS, Vector::cast_from(y));
}

/// Whether [`masked_affine_cube`] handles a tensor of this dtype and layout (the caller
/// routes everything else to the portable path).
pub(crate) fn supports(dtype: DType, op: &MaskedAffine) -> bool {
    matches!(dtype, DType::F32 | DType::F16 | DType::BF16) && op.layout.numel() <= u32::MAX as usize
}

/// Launch the kernel. The tensor must satisfy [`supports`].
pub(crate) fn masked_affine_cube(x: CubeTensor, op: &MaskedAffine) -> CubeTensor {
    let x = into_contiguous(x);
    let numel = x.meta.num_elements();
    if numel == 0 {
        return x;
    }
    let dtype = x.dtype;
    let client = x.client.clone();
    // The widest load the runtime optimises for that divides the element count (1 always
    // does): lanes of one load are consecutive elements.
    let vector_size = client
        .io_optimized_vector_sizes(dtype.size())
        .filter(|&v| v >= 1 && numel.is_multiple_of(v))
        .max()
        .unwrap_or(1);
    let units = numel / vector_size;
    let cube_dim = CubeDim::new(&client, units);
    let cube_count = calculate_cube_count_elemwise(&client, units, cube_dim);

    let keys = Keys::new(op.seed);
    let l = op.layout;
    let params = MaskParamsLaunch::new(
        keys.block(0),
        keys.k1,
        op.threshold.min(u32::MAX as u64) as u32,
        u32::from(op.threshold > u32::MAX as u64),
        (l.bcast * l.inner) as u32,
        l.inner as u32,
        op.kept_scale as f32,
        op.kept_bias as f32,
        op.dropped_value as f32,
    );
    let storage = burn::backend::cubecl::dtype_to_storage_type(dtype);

    let in_place = x.can_mut();
    let (output, out_arg) = if in_place {
        let alias = x.as_linear_view_alias(0);
        (x.clone(), alias)
    } else {
        let out = empty_device_contiguous_dtype(
            client.clone(),
            x.device.clone(),
            x.meta.shape().clone(),
            dtype,
        );
        let arg = out.clone().into_linear_view();
        (out, arg)
    };
    let address = x
        .required_address_type()
        .max(output.required_address_type());
    // SAFETY: every unit checks `is_in_bounds` before reading or writing; input and output
    // have `numel` elements, contiguous; the in-place alias has the input's layout.
    unsafe {
        masked_affine_kernel::launch_unchecked(
            &client,
            cube_count,
            cube_dim,
            address,
            vector_size,
            x.into_linear_view(),
            out_arg,
            params,
            storage,
        );
    }
    output
}

impl MaskedAffineOps for CubeBackend {
    fn masked_affine(
        x: burn::backend::tensor::FloatTensor<Self>,
        op: MaskedAffine,
    ) -> burn::backend::tensor::FloatTensor<Self> {
        masked_affine_cube(x, &op)
    }
}
