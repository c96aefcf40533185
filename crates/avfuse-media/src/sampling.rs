//! Which video frames to take from a clip.
//!
//! A clip is seen as a constant-frame-rate sequence of `num_frames` frames, frame `i`
//! showing at `i / fps` seconds after the first frame. A [`Sampling`] turns that into a
//! sorted list of frame indices ([`Sampling::frame_indices`]); the decoder
//! ([`crate::decode`], feature `ffmpeg`) then fetches exactly those frames.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::MediaError;

/// How to pick `count` frames from a clip.
///
/// Every mode returns exactly `count` indices, sorted ascending. When the clip has fewer
/// frames than asked for, indices repeat (uniform, random) or the window is padded with
/// the last frame (start-at), so callers always get a fixed `T`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Sampling {
    /// `count` frames evenly spread over the whole clip, first and last frame included
    /// (`round(linspace(0, num_frames - 1, count))`, like `np.linspace(...).round()`).
    Uniform {
        /// Frames to take.
        count: usize,
    },
    /// Segment-based random sampling (TSN-style): the clip is cut into `count` equal
    /// segments and one frame is drawn uniformly in each, with a ChaCha8 stream seeded by
    /// `seed`. Covers the whole clip, never repeats a frame when `num_frames >= count`, and
    /// is reproducible for a given `(seed, num_frames, count)`.
    Random {
        /// Frames to take.
        count: usize,
        /// Seed of the draw.
        seed: u64,
    },
    /// A contiguous window: frames `s, s + stride, ..., s + (count - 1) * stride` with
    /// `s = round(start_s * fps)`. Positions past the last frame repeat the last frame.
    StartAt {
        /// Time of the first frame, in seconds from the first frame of the clip.
        start_s: f64,
        /// Frames to take.
        count: usize,
        /// Step between taken frames, in frames (1 = every frame).
        stride: usize,
    },
}

impl Default for Sampling {
    /// 32 consecutive frames from the start (`StartAt { 0.0, 32, 1 }`).
    fn default() -> Self {
        Self::StartAt {
            start_s: 0.0,
            count: 32,
            stride: 1,
        }
    }
}

impl Sampling {
    /// Frames this sampling returns.
    pub fn count(&self) -> usize {
        match *self {
            Self::Uniform { count } | Self::Random { count, .. } | Self::StartAt { count, .. } => {
                count
            }
        }
    }

    /// The same sampling with a different frame count.
    pub fn with_count(&self, count: usize) -> Self {
        let mut s = self.clone();
        match &mut s {
            Self::Uniform { count: c } | Self::Random { count: c, .. } => *c = count,
            Self::StartAt { count: c, .. } => *c = count,
        }
        s
    }

    /// Checks the parameters; the error names the field at fault.
    pub fn validate(&self) -> Result<(), MediaError> {
        let bad = |m: String| Err(MediaError::Invalid(format!("sampling: {m}")));
        if self.count() == 0 {
            return bad("count must be > 0, got 0".into());
        }
        if let Self::StartAt {
            start_s, stride, ..
        } = *self
        {
            if !start_s.is_finite() || start_s < 0.0 {
                return bad(format!("start_s must be finite and >= 0, got {start_s}"));
            }
            if stride == 0 {
                return bad("stride must be > 0, got 0".into());
            }
        }
        Ok(())
    }

    /// The sorted frame indices (each `< num_frames`) for a clip of `num_frames` frames at
    /// `fps` frames per second. Errors when the clip is empty, `fps` is not positive, or
    /// a start-at window begins after the last frame.
    pub fn frame_indices(&self, num_frames: usize, fps: f64) -> Result<Vec<usize>, MediaError> {
        self.validate()?;
        if num_frames == 0 {
            return Err(MediaError::Invalid(
                "sampling: the clip has no frames".into(),
            ));
        }
        if !fps.is_finite() || fps <= 0.0 {
            return Err(MediaError::Invalid(format!(
                "sampling: fps must be finite and > 0, got {fps}"
            )));
        }
        let last = num_frames - 1;
        Ok(match *self {
            Self::Uniform { count } => {
                if count == 1 {
                    vec![0]
                } else {
                    (0..count)
                        .map(|k| {
                            let x = k as f64 * last as f64 / (count - 1) as f64;
                            // Round half to even, like numpy.
                            (x.round_ties_even() as usize).min(last)
                        })
                        .collect()
                }
            }
            Self::Random { count, seed } => {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let seg = num_frames as f64 / count as f64;
                (0..count)
                    .map(|k| {
                        let lo = (k as f64 * seg).floor() as usize;
                        let hi = (((k + 1) as f64 * seg).floor() as usize).max(lo + 1);
                        let draw = lo + (rng.random::<u64>() % (hi - lo) as u64) as usize;
                        draw.min(last)
                    })
                    .collect()
            }
            Self::StartAt {
                start_s,
                count,
                stride,
            } => {
                let first = (start_s * fps).round() as usize;
                if first > last {
                    return Err(MediaError::Invalid(format!(
                        "sampling: start_s = {start_s} s is frame {first}, but the clip has only \
                         {num_frames} frames ({:.3} s)",
                        num_frames as f64 / fps
                    )));
                }
                (0..count).map(|k| (first + k * stride).min(last)).collect()
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_matches_numpy_linspace() {
        let s = Sampling::Uniform { count: 5 };
        assert_eq!(s.frame_indices(50, 25.0).unwrap(), vec![0, 12, 24, 37, 49]);
        assert_eq!(
            Sampling::Uniform { count: 1 }
                .frame_indices(10, 25.0)
                .unwrap(),
            vec![0]
        );
        // Fewer frames than asked: repeats, still sorted, fixed count.
        let v = Sampling::Uniform { count: 8 }
            .frame_indices(3, 25.0)
            .unwrap();
        assert_eq!(v.len(), 8);
        assert!(v.windows(2).all(|w| w[0] <= w[1]) && v[7] == 2);
    }

    #[test]
    fn random_is_seeded_sorted_and_one_per_segment() {
        let s = Sampling::Random { count: 8, seed: 7 };
        let a = s.frame_indices(100, 25.0).unwrap();
        assert_eq!(a, s.frame_indices(100, 25.0).unwrap());
        assert_ne!(
            a,
            Sampling::Random { count: 8, seed: 8 }
                .frame_indices(100, 25.0)
                .unwrap()
        );
        for (k, &i) in a.iter().enumerate() {
            assert!((k * 100 / 8..(k + 1) * 100 / 8 + 1).contains(&i), "{a:?}");
        }
        assert!(a.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn start_at_window_and_padding() {
        let s = Sampling::StartAt {
            start_s: 0.4,
            count: 4,
            stride: 2,
        };
        assert_eq!(s.frame_indices(50, 25.0).unwrap(), vec![10, 12, 14, 16]);
        let s = Sampling::StartAt {
            start_s: 1.9,
            count: 4,
            stride: 1,
        };
        assert_eq!(s.frame_indices(50, 25.0).unwrap(), vec![48, 49, 49, 49]);
        let err = Sampling::StartAt {
            start_s: 3.0,
            count: 4,
            stride: 1,
        }
        .frame_indices(50, 25.0)
        .unwrap_err();
        assert!(err.to_string().contains("start_s"), "{err}");
    }

    #[test]
    fn invalid_parameters_are_named() {
        let e = Sampling::Uniform { count: 0 }
            .frame_indices(10, 25.0)
            .unwrap_err();
        assert!(e.to_string().contains("count"));
        let e = Sampling::StartAt {
            start_s: 0.0,
            count: 2,
            stride: 0,
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("stride"));
        let e = Sampling::Uniform { count: 2 }
            .frame_indices(10, 0.0)
            .unwrap_err();
        assert!(e.to_string().contains("fps"));
    }
}
