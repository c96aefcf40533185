//! The one fused kernel behind the whole dropout family, on plain slices (no Burn).
//!
//! Every variant is the same element-wise map
//!
//! ```text
//! y[i] = keep(mask_index(i)) ? kept_scale * x[i] + kept_bias : dropped_value
//! ```
//!
//! with the tensor viewed as a row-major `[outer, bcast, inner]` block and element
//! `(o, t, r)` reading mask entry `o * inner + r` (the mask is broadcast over `bcast`):
//!
//! | variant | outer | bcast | inner | kept_scale | kept_bias | dropped_value |
//! |---|---|---|---|---|---|---|
//! | dropout | 1 | 1 | numel | 1/(1-p) | 0 | 0 |
//! | dropout1d/2d/3d | N*C | spatial | 1 | 1/(1-p) | 0 | 0 |
//! | alpha dropout | 1 | 1 | numel | a | a*alpha*p | a*alpha*(p-1) |
//! | feature alpha dropout | N*C | spatial | 1 | a | a*alpha*p | a*alpha*(p-1) |
//! | drop path | B | rest | 1 | 1/(1-p) or 1 | 0 | 0 |
//! | locked (T,B,H) | 1 | T | B*H | 1/(1-p) | 0 | 0 |
//! | locked (B,T,H) | B | T | H | 1/(1-p) | 0 | 0 |
//!
//! The keep decision is a counter-based hash of `(seed, mask index)`, so the mask is never
//! stored: the backward pass regenerates it from the seed (`dx = keep ? kept_scale * dy : 0`,
//! the same kernel with bias and dropped value 0). One read of `x`, one write of `y`.
//!
//! Why not `rand`: a stream generator would have to be advanced sequentially (or jumped per
//! chunk), and the backward would need the mask stored. A stateless hash gives the same bits
//! for an element whichever thread or chunk computes it, so results do not depend on the
//! thread count.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// How a contiguous tensor maps onto mask entries: viewed as `[outer, bcast, inner]`,
/// element `(o, t, r)` uses mask entry `o * inner + r`. `outer * bcast * inner` is the
/// number of elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MaskLayout {
    /// Leading extent with one mask row each.
    pub outer: usize,
    /// Extent the mask is broadcast over (shares one mask row).
    pub bcast: usize,
    /// Trailing extent, one mask entry per position.
    pub inner: usize,
}

impl MaskLayout {
    /// One mask entry per element.
    pub fn elementwise(numel: usize) -> Self {
        Self {
            outer: 1,
            bcast: 1,
            inner: numel,
        }
    }

    /// Number of tensor elements.
    pub fn numel(&self) -> usize {
        self.outer * self.bcast * self.inner
    }

    /// Number of mask entries (`outer * inner`).
    pub fn mask_len(&self) -> usize {
        self.outer * self.inner
    }
}

/// Parameters of one application of the kernel. `Copy`, so the backward pass keeps it as its
/// whole state (no mask tensor is saved).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MaskedAffine {
    /// Tensor-to-mask mapping.
    pub layout: MaskLayout,
    /// Seed of the counter-based hash.
    pub seed: u64,
    /// Keep an entry when its 32-bit hash is below this: `round(keep_prob * 2^32)`, in
    /// `[0, 2^32]` (`2^32` keeps everything, `0` drops everything).
    pub threshold: u64,
    /// Multiplier of kept values.
    pub kept_scale: f64,
    /// Added to kept values.
    pub kept_bias: f64,
    /// Value written where the mask drops.
    pub dropped_value: f64,
}

impl MaskedAffine {
    /// Threshold for a keep probability in `[0, 1]`.
    pub fn threshold_for(keep_prob: f64) -> u64 {
        let t = (keep_prob.clamp(0.0, 1.0) * 4_294_967_296.0).round();
        t as u64
    }

    /// The parameters of the backward pass: `dx = keep ? kept_scale * dy : 0`.
    pub fn backward(&self) -> Self {
        Self {
            kept_bias: 0.0,
            dropped_value: 0.0,
            ..*self
        }
    }

    /// Whether mask entry `index` is kept.
    #[inline(always)]
    pub fn keep(&self, index: u64) -> bool {
        let keys = Keys::new(self.seed);
        (keys.bits(index) as u64) < self.threshold
    }

    /// The mask as 0/1 values, one per mask entry (`outer * inner`, row-major). Used by the
    /// backends without a native kernel and by tests.
    pub fn mask(&self) -> Vec<f32> {
        let keys = Keys::new(self.seed);
        let n = self.layout.mask_len();
        let mut out = vec![0f32; n];
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, chunk)| {
                let start = (c * CHUNK) as u64;
                for (j, v) in chunk.iter_mut().enumerate() {
                    *v = if (keys.bits(start + j as u64) as u64) < self.threshold {
                        1.0
                    } else {
                        0.0
                    };
                }
            });
        out
    }
}

/// Elements per parallel task: large enough to amortise scheduling, small enough to balance.
const CHUNK: usize = 1 << 16;

/// "lowbias32" integer hash (C. Wellons, hash-prospector): a bijection on u32 with low bias.
#[inline(always)]
fn lowbias32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

/// Per-seed keys of the hash.
#[derive(Clone, Copy)]
pub(crate) struct Keys {
    k0: u32,
    pub(crate) k1: u32,
}

impl Keys {
    #[inline(always)]
    pub(crate) fn new(seed: u64) -> Self {
        // splitmix64 spreads a small or structured seed over both keys.
        let z = crate::hash::splitmix64(seed);
        Self {
            k0: z as u32,
            k1: (z >> 32) as u32,
        }
    }

    /// Key of the block of 2^32 indices sharing the high word `hi`.
    #[inline(always)]
    pub(crate) fn block(&self, hi: u32) -> u32 {
        if hi == 0 {
            self.k0
        } else {
            self.k0 ^ lowbias32(hi ^ self.k1)
        }
    }

    /// 32 random bits for mask entry `index`.
    #[inline(always)]
    fn bits(&self, index: u64) -> u32 {
        bits_in_block(self.block((index >> 32) as u32), self.k1, index as u32)
    }
}

#[inline(always)]
fn bits_in_block(block: u32, k1: u32, lo: u32) -> u32 {
    lowbias32(lowbias32(lo ^ block) ^ k1)
}

/// A float element the kernel can process (computed in f32, or f64 for f64 tensors).
pub trait KernelFloat: Copy + Send + Sync + 'static {
    /// Compute type.
    type Acc: Copy
        + Send
        + Sync
        + core::ops::Mul<Output = Self::Acc>
        + core::ops::Add<Output = Self::Acc>;
    /// Widen.
    fn widen(self) -> Self::Acc;
    /// Narrow (round to nearest).
    fn narrow(v: Self::Acc) -> Self;
    /// A parameter in the compute type.
    fn param(v: f64) -> Self::Acc;
    /// `if keep { kept } else { dropped }` without a branch (bit masks): with a random mask
    /// a branch mispredicts half the time, and LLVM does not always turn it into a select.
    fn select(keep: bool, kept: Self::Acc, dropped: Self::Acc) -> Self::Acc;
}

#[inline(always)]
fn select32(keep: bool, kept: f32, dropped: f32) -> f32 {
    let m = 0u32.wrapping_sub(keep as u32);
    f32::from_bits((kept.to_bits() & m) | (dropped.to_bits() & !m))
}

impl KernelFloat for f32 {
    type Acc = f32;
    #[inline(always)]
    fn select(keep: bool, kept: f32, dropped: f32) -> f32 {
        select32(keep, kept, dropped)
    }

    #[inline(always)]
    fn widen(self) -> f32 {
        self
    }
    #[inline(always)]
    fn narrow(v: f32) -> Self {
        v
    }
    fn param(v: f64) -> f32 {
        v as f32
    }
}

impl KernelFloat for f64 {
    type Acc = f64;
    #[inline(always)]
    fn select(keep: bool, kept: f64, dropped: f64) -> f64 {
        let m = 0u64.wrapping_sub(keep as u64);
        f64::from_bits((kept.to_bits() & m) | (dropped.to_bits() & !m))
    }

    #[inline(always)]
    fn widen(self) -> f64 {
        self
    }
    #[inline(always)]
    fn narrow(v: f64) -> Self {
        v
    }
    fn param(v: f64) -> f64 {
        v
    }
}

impl KernelFloat for half::bf16 {
    type Acc = f32;

    #[inline(always)]
    fn select(keep: bool, kept: f32, dropped: f32) -> f32 {
        select32(keep, kept, dropped)
    }
    #[inline(always)]
    fn widen(self) -> f32 {
        f32::from_bits((self.to_bits() as u32) << 16)
    }
    /// Round to nearest even, NaN kept NaN; branch-free so the loop vectorises (`half`'s
    /// conversion branches on NaN and was 4x slower here). Same results as `half`.
    #[inline(always)]
    fn narrow(v: f32) -> Self {
        let b = v.to_bits();
        let rounded = (b.wrapping_add(0x7FFF + ((b >> 16) & 1)) >> 16) as u16;
        let nan = ((b >> 16) as u16) | 0x0040;
        let is_nan = (b & 0x7FFF_FFFF) > 0x7F80_0000;
        let m = 0u16.wrapping_sub(is_nan as u16);
        half::bf16::from_bits((nan & m) | (rounded & !m))
    }
    fn param(v: f64) -> f32 {
        v as f32
    }
}

impl KernelFloat for half::f16 {
    type Acc = f32;
    #[inline(always)]
    fn select(keep: bool, kept: f32, dropped: f32) -> f32 {
        select32(keep, kept, dropped)
    }

    #[inline(always)]
    fn widen(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn narrow(v: f32) -> Self {
        half::f16::from_f32(v)
    }
    fn param(v: f64) -> f32 {
        v as f32
    }
}

/// Apply the kernel: `y = op(x)`. `x` and `y` are contiguous with `layout.numel()` elements.
///
/// Multi-threaded with rayon; each inner loop is branch-free so it vectorises, and on x86-64
/// a copy compiled for AVX2 is picked at run time when the CPU has it.
///
/// # Panics
/// If `x.len()` or `y.len()` differs from `layout.numel()` (an internal invariant: the
/// callers derive the layout from the tensor's shape).
pub fn apply<E: KernelFloat>(x: &[E], y: &mut [E], op: &MaskedAffine) {
    // SAFETY: `MaybeUninit<E>` has the layout of `E`, every `E` is a valid `MaybeUninit<E>`,
    // and the kernel only writes valid `E` values through it.
    let y = unsafe { &mut *(y as *mut [E] as *mut [MaybeUninit<E>]) };
    apply_uninit(x, y, op);
}

/// [`apply`] into uninitialised memory: the output's pages are first touched by the
/// kernel's threads (no zero-fill pass). Every element of `y` is initialised on return.
pub fn apply_uninit<E: KernelFloat>(x: &[E], y: &mut [MaybeUninit<E>], op: &MaskedAffine) {
    assert_eq!(x.len(), op.layout.numel(), "masked_affine: input length");
    assert_eq!(y.len(), op.layout.numel(), "masked_affine: output length");
    run(Some(x), y, op);
}

/// In-place form of [`apply`]: `x = op(x)`.
pub fn apply_in_place<E: KernelFloat>(x: &mut [E], op: &MaskedAffine) {
    assert_eq!(x.len(), op.layout.numel(), "masked_affine: input length");
    // SAFETY: as in `apply`; moreover `x` is initialised, which `run` relies on when it
    // reads from `dst` (src = None).
    let x = unsafe { &mut *(x as *mut [E] as *mut [MaybeUninit<E>]) };
    run(None, x, op);
}

/// Read an element of the in-place buffer.
#[inline(always)]
fn read_init<E: Copy>(v: &MaybeUninit<E>) -> E {
    // SAFETY: only called on the in-place path (src = None), where `dst` came from an
    // initialised `&mut [E]` (`apply_in_place`) and each element is read before its write.
    unsafe { v.assume_init() }
}

/// `src = None` means in place: `dst` is then initialised and is read before it is written.
fn run<E: KernelFloat>(src: Option<&[E]>, dst: &mut [MaybeUninit<E>], op: &MaskedAffine) {
    let MaskLayout {
        outer,
        bcast,
        inner,
    } = op.layout;
    if dst.is_empty() {
        return;
    }
    let keys = Keys::new(op.seed);
    let a = E::param(op.kept_scale);
    let b = E::param(op.kept_bias);
    let c = E::param(op.dropped_value);
    let thr = op.threshold;

    if bcast == 1 {
        // One mask entry per element (mask index == element index).
        dst.par_chunks_mut(CHUNK).enumerate().for_each(|(ci, d)| {
            let start = (ci * CHUNK) as u64;
            let s = src.map(|s| &s[ci * CHUNK..ci * CHUNK + d.len()]);
            elementwise_chunk(s, d, start, keys, thr, a, b, c);
        });
    } else if inner == 1 {
        // One mask entry per run of `bcast` elements (channel dropout, drop path).
        let runs_per_task = (CHUNK / bcast).max(1);
        dst.par_chunks_mut(runs_per_task * bcast)
            .enumerate()
            .for_each(|(ci, d)| {
                let first_run = ci * runs_per_task;
                let base = first_run * bcast;
                for (k, run) in d.chunks_mut(bcast).enumerate() {
                    let kept = (keys.bits((first_run + k) as u64) as u64) < thr;
                    let off = base + k * bcast;
                    let s = src.map(|s| &s[off..off + run.len()]);
                    fill_run(s, run, kept, a, b, c);
                }
            });
    } else {
        // A mask row of `inner` entries per outer index, shared by `bcast` rows (locked
        // dropout): hash the row once, then every row is a branch-free select. The row is
        // kept as u8 0/1 and compared (not a `bool` branch): with a random mask a branch
        // mispredicts half the time and was 5x slower.
        let row = bcast * inner;
        for o in 0..outer {
            let mut kept = vec![0u8; inner];
            let base = (o * inner) as u64;
            kept.par_chunks_mut(CHUNK).enumerate().for_each(|(ci, k)| {
                let start = base + (ci * CHUNK) as u64;
                for (j, v) in k.iter_mut().enumerate() {
                    *v = ((keys.bits(start + j as u64) as u64) < thr) as u8;
                }
            });
            let block = &mut dst[o * row..(o + 1) * row];
            block.par_chunks_mut(inner).enumerate().for_each(|(t, d)| {
                let off = o * row + t * inner;
                match src {
                    Some(s) => {
                        let s = &s[off..off + inner];
                        for ((v, &x), &k) in d.iter_mut().zip(s).zip(&kept) {
                            let x = x.widen();
                            v.write(E::narrow(E::select(k != 0, a * x + b, c)));
                        }
                    }
                    None => {
                        for (v, &k) in d.iter_mut().zip(&kept) {
                            let x = read_init(v).widen();
                            v.write(E::narrow(E::select(k != 0, a * x + b, c)));
                        }
                    }
                }
            });
        }
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn elementwise_body<E: KernelFloat>(
    src: Option<&[E]>,
    dst: &mut [MaybeUninit<E>],
    start: u64,
    keys: Keys,
    thr: u64,
    a: E::Acc,
    b: E::Acc,
    c: E::Acc,
) {
    // Split at the 2^32 boundaries so the inner loop works on u32 counters only, and compare
    // in u32 (a u64 compare does not vectorise well): `thr == 2^32` means keep everything.
    let keep_all = thr > u32::MAX as u64;
    let thr32 = thr.min(u32::MAX as u64) as u32;
    let mut pos = 0usize;
    while pos < dst.len() {
        let index = start + pos as u64;
        let hi = (index >> 32) as u32;
        let lo = index as u32;
        let room = (u32::MAX - lo) as usize + 1;
        let n = room.min(dst.len() - pos);
        let block = keys.block(hi);
        let k1 = keys.k1;
        let d = &mut dst[pos..pos + n];
        // `thr` may be 2^32: compare in u64.
        match src {
            Some(s) => {
                let s = &s[pos..pos + n];
                for (j, (v, &x)) in d.iter_mut().zip(s).enumerate() {
                    let keep =
                        keep_all | (bits_in_block(block, k1, lo.wrapping_add(j as u32)) < thr32);
                    let x = x.widen();
                    v.write(E::narrow(E::select(keep, a * x + b, c)));
                }
            }
            None => {
                for (j, v) in d.iter_mut().enumerate() {
                    let keep =
                        keep_all | (bits_in_block(block, k1, lo.wrapping_add(j as u32)) < thr32);
                    let x = read_init(v).widen();
                    v.write(E::narrow(E::select(keep, a * x + b, c)));
                }
            }
        }
        pos += n;
    }
}

#[allow(clippy::too_many_arguments)]
fn elementwise_chunk<E: KernelFloat>(
    src: Option<&[E]>,
    dst: &mut [MaybeUninit<E>],
    start: u64,
    keys: Keys,
    thr: u64,
    a: E::Acc,
    b: E::Acc,
    c: E::Acc,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            unsafe { elementwise_chunk_avx2(src, dst, start, keys, thr, a, b, c) };
            return;
        }
    }
    elementwise_body(src, dst, start, keys, thr, a, b, c);
}

/// The same loop compiled with AVX2 enabled (8-lane 32-bit multiplies for the hash).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn elementwise_chunk_avx2<E: KernelFloat>(
    src: Option<&[E]>,
    dst: &mut [MaybeUninit<E>],
    start: u64,
    keys: Keys,
    thr: u64,
    a: E::Acc,
    b: E::Acc,
    c: E::Acc,
) {
    elementwise_body(src, dst, start, keys, thr, a, b, c);
}

#[inline(always)]
fn fill_run<E: KernelFloat>(
    src: Option<&[E]>,
    dst: &mut [MaybeUninit<E>],
    kept: bool,
    a: E::Acc,
    b: E::Acc,
    c: E::Acc,
) {
    if kept {
        match src {
            Some(s) => {
                for (v, &x) in dst.iter_mut().zip(s) {
                    v.write(E::narrow(a * x.widen() + b));
                }
            }
            None => {
                for v in dst.iter_mut() {
                    v.write(E::narrow(a * read_init(v).widen() + b));
                }
            }
        }
    } else {
        let c = E::narrow(c);
        dst.fill(MaybeUninit::new(c));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(layout: MaskLayout, p: f64, seed: u64) -> MaskedAffine {
        MaskedAffine {
            layout,
            seed,
            threshold: MaskedAffine::threshold_for(1.0 - p),
            kept_scale: 1.0 / (1.0 - p),
            kept_bias: 0.0,
            dropped_value: 0.0,
        }
    }

    /// The fused kernel agrees with the naive definition for every layout case.
    #[test]
    fn matches_definition_for_each_layout() {
        let layouts = [
            MaskLayout::elementwise(200_003),
            MaskLayout {
                outer: 37,
                bcast: 129,
                inner: 1,
            },
            MaskLayout {
                outer: 5,
                bcast: 7,
                inner: 11,
            },
            MaskLayout {
                outer: 1,
                bcast: 9,
                inner: 300,
            },
        ];
        for (li, layout) in layouts.into_iter().enumerate() {
            let mut o = op(layout, 0.3, 42 + li as u64);
            o.kept_bias = 0.25;
            o.dropped_value = -1.5;
            let x: Vec<f32> = (0..layout.numel())
                .map(|i| (i % 97) as f32 * 0.1 - 3.0)
                .collect();
            let mut y = vec![0f32; x.len()];
            apply(&x, &mut y, &o);
            let mut z = x.clone();
            apply_in_place(&mut z, &o);
            assert_eq!(y, z, "in place differs, layout {layout:?}");
            let mask = o.mask();
            for i in 0..x.len() {
                let oi = i / (layout.bcast * layout.inner);
                let r = i % layout.inner;
                let want = if mask[oi * layout.inner + r] == 1.0 {
                    (o.kept_scale as f32) * x[i] + o.kept_bias as f32
                } else {
                    o.dropped_value as f32
                };
                assert_eq!(y[i], want, "element {i} layout {layout:?}");
            }
        }
    }

    #[test]
    fn keep_rate_matches_probability() {
        for p in [0.1, 0.5, 0.9] {
            let o = op(MaskLayout::elementwise(1 << 20), p, 7);
            let kept: f64 = o.mask().iter().map(|&v| v as f64).sum::<f64>() / (1 << 20) as f64;
            // 5 binomial standard deviations.
            let sd = (p * (1.0 - p) / (1 << 20) as f64).sqrt();
            assert!((kept - (1.0 - p)).abs() < 5.0 * sd, "p {p}: kept {kept}");
        }
    }

    #[test]
    fn thresholds_at_the_ends() {
        assert_eq!(MaskedAffine::threshold_for(1.0), 1 << 32);
        assert_eq!(MaskedAffine::threshold_for(0.0), 0);
        let all = op(MaskLayout::elementwise(10_000), 0.0, 3).mask();
        assert!(all.iter().all(|&v| v == 1.0));
        let mut none = op(MaskLayout::elementwise(10_000), 0.5, 3);
        none.threshold = 0;
        assert!(none.mask().iter().all(|&v| v == 0.0));
    }

    #[test]
    fn seeds_give_different_masks_and_the_same_seed_the_same() {
        let a = op(MaskLayout::elementwise(4096), 0.5, 1).mask();
        let b = op(MaskLayout::elementwise(4096), 0.5, 2).mask();
        let a2 = op(MaskLayout::elementwise(4096), 0.5, 1).mask();
        assert_eq!(a, a2);
        let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
        assert!(
            (1700..2400).contains(&same),
            "masks of two seeds agree on {same}/4096"
        );
    }

    /// Indices beyond 2^32 use their own block key (no wrap-around repetition).
    #[test]
    fn high_indices_do_not_repeat_low_ones() {
        let o = op(MaskLayout::elementwise(1), 0.5, 9);
        let low: Vec<bool> = (0..256u64).map(|i| o.keep(i)).collect();
        let high: Vec<bool> = (0..256u64).map(|i| o.keep(i + (1 << 32))).collect();
        assert_ne!(low, high);
        // The chunked loop crosses the 2^32 boundary exactly like `keep`.
        let keys = Keys::new(9);
        let start = (1u64 << 32) - 5;
        let mut d = vec![1f32; 10];
        apply_in_place_raw(&mut d, start, keys, o.threshold);
        for (j, v) in d.iter().enumerate() {
            assert_eq!(*v == 1.0, o.keep(start + j as u64), "element {j}");
        }
    }

    fn apply_in_place_raw(d: &mut [f32], start: u64, keys: Keys, thr: u64) {
        // SAFETY: as in `apply_in_place`.
        let d = unsafe { &mut *(d as *mut [f32] as *mut [MaybeUninit<f32>]) };
        elementwise_body(None, d, start, keys, thr, 1.0, 0.0, 0.0);
    }

    #[test]
    fn bf16_conversion_matches_half() {
        let specials = [
            0.0f32,
            -0.0,
            1.0,
            -1.5,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
            f32::MIN_POSITIVE,
            1e-40,
            3.0e38,
        ];
        let mut rng = 0x1234_5678u32;
        let randoms = (0..100_000).map(|_| {
            rng = lowbias32(rng.wrapping_add(1));
            f32::from_bits(rng)
        });
        for v in specials.into_iter().chain(randoms) {
            let ours = <half::bf16 as KernelFloat>::narrow(v);
            let theirs = half::bf16::from_f32(v);
            if v.is_nan() {
                assert!(ours.is_nan(), "{v:e}");
            } else {
                assert_eq!(ours.to_bits(), theirs.to_bits(), "{v:e}");
                assert_eq!(KernelFloat::widen(theirs), theirs.to_f32());
            }
        }
    }

    #[test]
    fn bf16_and_f64_follow_the_f32_mask() {
        let o = op(MaskLayout::elementwise(5000), 0.4, 11);
        let x32: Vec<f32> = (0..5000).map(|i| 1.0 + i as f32 * 1e-3).collect();
        let mut y32 = vec![0f32; 5000];
        apply(&x32, &mut y32, &o);
        let x16: Vec<half::bf16> = x32.iter().map(|&v| half::bf16::from_f32(v)).collect();
        let mut y16 = vec![half::bf16::ZERO; 5000];
        apply(&x16, &mut y16, &o);
        let x64: Vec<f64> = x32.iter().map(|&v| v as f64).collect();
        let mut y64 = vec![0f64; 5000];
        apply(&x64, &mut y64, &o);
        for i in 0..5000 {
            assert_eq!(y32[i] == 0.0, y16[i].to_f32() == 0.0);
            assert_eq!(y32[i] == 0.0, y64[i] == 0.0);
        }
    }
}
