//! Decoding video files with FFmpeg (feature `ffmpeg`): probing ([`open`]) and reading a
//! clip's sampled frames and its audio ([`read_clip`]).
//!
//! **Timeline.** Every time in this module is in seconds from the presentation time of
//! the first video frame (the video stream's `start_time`), which is also where
//! [`crate::sampling::Sampling`] counts frames from: frame `i` is at `i / fps`.
//!
//! **Audio.** Decoded samples are placed on that timeline by their presentation
//! timestamps: FFmpeg's AAC decoder drops the encoder priming (the MP4 edit list /
//! `skip_samples` side data) and shifts the timestamps accordingly, so a sound made at
//! the time of video frame `i` lands at sample `i / fps * rate`, whatever the priming,
//! the audio stream's start offset or gaps in the stream. Channels are downmixed by
//! averaging (not FFmpeg's -3 dB centre mix), then resampled to [`ReadOptions::audio_rate`]
//! by libswresample with the **soxr** engine (precision 20 bits, soxr's "high quality",
//! librosa's default `soxr_hq`); where FFmpeg was built without libsoxr, swresample's own
//! engine with a 64-tap windowed-sinc (Blackman-Nuttall) filter is used instead, and a
//! debug log line says so. Debian 12's FFmpeg 5.1 has soxr.
//!
//! **Frames.** RGB, 8 bits, converted by libswscale (bicubic), `[T, H, W, 3]` row-major.
//! Seeking is used where it saves decoding (see [`SeekPolicy`]).
//!
//! **Errors.** A missing, corrupt, truncated or non-video file gives a
//! [`MediaError`] naming the file, never a panic. FFmpeg's own log is set to `fatal` on
//! first use, so broken files do not flood stderr; the returned errors carry the detail.

use std::path::{Path, PathBuf};
use std::sync::Once;

use ffmpeg_next as ff;
use serde::{Deserialize, Serialize};

use crate::error::MediaError;
use crate::sampling::Sampling;

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // `ff::init` only registers devices on FFmpeg >= 4; it cannot fail in practice,
        // and a failure would surface at the first `open` anyway.
        let _ = ff::init();
        ff::util::log::set_level(ff::util::log::Level::Fatal);
    });
}

fn fferr(path: &Path, what: &str, e: ff::Error) -> MediaError {
    MediaError::format(path, format!("{what}: {e}"))
}

/// What [`open`] learns about a file without decoding it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MediaInfo {
    /// Container format name(s) as FFmpeg reports them (e.g. `mov,mp4,m4a,3gp,3g2,mj2`).
    pub container: String,
    /// Video duration in seconds (the stream's, else the container's).
    pub duration_s: f64,
    /// Video codec name (e.g. `h264`, `hevc`, `mpeg4`).
    pub video_codec: String,
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Frame rate in frames per second (average frame rate, else the stream's base rate).
    pub fps: f64,
    /// Number of frames: the container's count if it has one, else `round(duration * fps)`.
    pub num_frames: usize,
    /// Presentation time of the first video frame on the file's own clock, seconds.
    pub video_start_s: f64,
    /// Whether the file has an audio stream.
    pub has_audio: bool,
    /// Audio codec name (e.g. `aac`), if any.
    pub audio_codec: Option<String>,
    /// Audio sample rate in Hz, if any.
    pub sample_rate: Option<u32>,
    /// Audio channel count, if any.
    pub channels: Option<u16>,
    /// Start of the audio stream relative to the first video frame, seconds (can be
    /// negative), if any.
    pub audio_start_s: Option<f64>,
    /// Key frames listed in the container's index (0 when it has no index).
    pub keyframes: usize,
}

/// The size of the returned frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameSize {
    /// The coded size.
    Native,
    /// Scaled (never enlarged) so that the longer side is at most `max_side` pixels,
    /// keeping the aspect ratio (sides rounded to even numbers).
    Fit {
        /// Longest side in pixels.
        max_side: u32,
    },
    /// A `side x side` square: scaled so the shorter side is `side`, then centre-cropped.
    Square(u32),
    /// Exactly `width x height`, stretched (aspect ratio not kept).
    Exact {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
}

impl FrameSize {
    /// `(scaled width, scaled height, output width, output height)` for a `w x h` source:
    /// the source is scaled to the first pair, then centre-cropped to the second.
    fn plan(self, w: u32, h: u32) -> Result<(u32, u32, u32, u32), MediaError> {
        let even = |x: f64| (((x / 2.0).round() as u32) * 2).max(2);
        let r = match self {
            Self::Native => (w, h, w, h),
            Self::Fit { max_side } => {
                if max_side < 2 {
                    return Err(MediaError::Invalid(format!(
                        "frame_size: max_side must be >= 2, got {max_side}"
                    )));
                }
                let s = (f64::from(max_side) / f64::from(w.max(h))).min(1.0);
                if s >= 1.0 {
                    (w, h, w, h)
                } else {
                    let (a, b) = (even(f64::from(w) * s), even(f64::from(h) * s));
                    (a, b, a, b)
                }
            }
            Self::Square(side) => {
                if side == 0 {
                    return Err(MediaError::Invalid(
                        "frame_size: square side must be > 0".into(),
                    ));
                }
                let s = f64::from(side) / f64::from(w.min(h));
                let a = ((f64::from(w) * s).round() as u32).max(side);
                let b = ((f64::from(h) * s).round() as u32).max(side);
                (a, b, side, side)
            }
            Self::Exact { width, height } => {
                if width == 0 || height == 0 {
                    return Err(MediaError::Invalid(format!(
                        "frame_size: exact size must be > 0, got {width} x {height}"
                    )));
                }
                (width, height, width, height)
            }
        };
        Ok(r)
    }
}

/// [`SeekPolicy::Auto`] seeks only when that skips decoding at least this many frames
/// (a seek flushes the decoder and its reordering pipeline, which costs a few frames).
const MIN_SEEK_GAP_FRAMES: f64 = 4.0;

/// When [`read_clip`] seeks instead of decoding through to the next wanted frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeekPolicy {
    /// Seek exactly when the container's index shows a key frame at or before the next
    /// wanted frame and at least 4 frames after the last decoded one: decoding from that
    /// key frame then skips at least 4 frames, more than a seek costs (a decoder flush).
    /// Without an index, seek when the next wanted frame is more than 2 s ahead.
    /// Measured by `examples/media_bench.rs` (`bench/results/media.json`): as fast as
    /// decoding through on long-GOP streams (where it never seeks), 1.2-1.8x faster on a
    /// stream with a key frame every 12 frames; `SeekEach` is up to 16x slower.
    #[default]
    Auto,
    /// Never seek: decode every frame from the start to the last wanted one.
    DecodeThrough,
    /// Seek before every wanted frame that the previous one did not also give.
    SeekEach,
}

/// Options of [`read_clip`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReadOptions {
    /// Size of the returned frames (default [`FrameSize::Native`]).
    pub frame_size: FrameSize,
    /// Which frames (default: 32 consecutive frames from the start).
    pub sampling: Sampling,
    /// Output audio sample rate in Hz (default 16000); `None` skips audio entirely.
    pub audio_rate: Option<u32>,
    /// Seconds of audio to return from the first sampled frame's time; `None` (default)
    /// returns the span of the sampled frames, first frame to last frame + `1 / fps`.
    /// Audio missing from the file in that span (before its start, after its end) is
    /// zero.
    pub audio_seconds: Option<f64>,
    /// Seeking policy (default [`SeekPolicy::Auto`]).
    pub seek: SeekPolicy,
    /// Decoder threads: 0 lets FFmpeg choose (all cores), default 1 (the right choice
    /// when clips are decoded in parallel, as `prepare` does).
    pub threads: usize,
    /// Seconds to ignore at the start of the clip (default 0): sampling sees a clip that
    /// starts `skip_s` later (rounded to a frame). Used to trim leading silence. Returned
    /// times still count from the file's first frame.
    #[serde(default)]
    pub skip_s: f64,
    /// Ask the decoder not to decode non-reference frames (frames no other frame is
    /// predicted from: most B-frames of H.264/HEVC) that no sampled frame needs (default
    /// true). The frames returned are bit-identical either way; this only saves work, the
    /// more so the sparser the sampling (FFmpeg's `skip_frame = nonref`, set per packet).
    #[serde(default = "default_true")]
    pub skip_unneeded: bool,
}

fn default_true() -> bool {
    true
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            frame_size: FrameSize::Native,
            sampling: Sampling::default(),
            audio_rate: Some(16_000),
            audio_seconds: None,
            seek: SeekPolicy::Auto,
            threads: 1,
            skip_s: 0.0,
            skip_unneeded: true,
        }
    }
}

/// Work counters of one [`read_clip`] call.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecodeStats {
    /// Video frames the decoder produced.
    pub frames_decoded: usize,
    /// Seeks performed.
    pub seeks: usize,
    /// Packets the decoder rejected as corrupt (skipped).
    pub corrupt_packets: usize,
    /// Wanted frames past the end of the decodable stream, filled with the last frame
    /// (at most 2 frames' worth of time; more is an error).
    pub padded_frames: usize,
}

/// A decoded clip.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodedClip {
    /// The file's properties.
    pub info: MediaInfo,
    /// Frame width in pixels.
    pub width: usize,
    /// Frame height in pixels.
    pub height: usize,
    /// RGB frames, u8, `[T, height, width, 3]` row-major (`T` = sampling count).
    pub frames: Vec<u8>,
    /// The frame index of each returned frame (sorted, may repeat).
    pub frame_indices: Vec<usize>,
    /// Presentation time of each returned frame, seconds from the first frame.
    pub frame_times_s: Vec<f64>,
    /// Mono audio at `audio_rate` Hz, in `[-1, 1]`, starting at `audio_start_s`; `None`
    /// when the file has no audio stream (or audio was not asked for).
    pub audio: Option<Vec<f32>>,
    /// Sample rate of `audio`, Hz.
    pub audio_rate: u32,
    /// Time of `audio[0]`, seconds from the first frame (= `frame_times_s[0]`).
    pub audio_start_s: f64,
    /// Work counters.
    pub stats: DecodeStats,
}

impl DecodedClip {
    /// Number of frames `T`.
    pub fn num_frames(&self) -> usize {
        self.frame_indices.len()
    }

    /// Frame `t` as `[height, width, 3]`.
    pub fn frame(&self, t: usize) -> &[u8] {
        let n = self.width * self.height * 3;
        &self.frames[t * n..(t + 1) * n]
    }
}

fn open_input(path: &Path) -> Result<ff::format::context::Input, MediaError> {
    init();
    if let Err(e) = std::fs::metadata(path) {
        return Err(MediaError::io(path, e));
    }
    ff::format::input(&path).map_err(|e| {
        MediaError::format(
            path,
            format!("cannot open as a media file (corrupt, truncated or not a video?): {e}"),
        )
    })
}

fn secs(ts: i64, tb: ff::Rational) -> f64 {
    ts as f64 * f64::from(tb.numerator()) / f64::from(tb.denominator())
}

fn rate_f64(r: ff::Rational) -> Option<f64> {
    (r.numerator() > 0 && r.denominator() > 0)
        .then(|| f64::from(r.numerator()) / f64::from(r.denominator()))
}

/// Key frame times (seconds, file clock, sorted) from the container's index.
fn keyframe_times(stream: &ff::format::stream::Stream) -> Vec<f64> {
    let tb = stream.time_base();
    let mut out = Vec::new();
    // SAFETY: `stream` borrows a live `AVFormatContext`, so its `AVStream` pointer is
    // valid for this scope; the index functions only read the stream's index array and
    // return pointers into it, which are read before any other FFmpeg call.
    unsafe {
        let st = stream.as_ptr() as *mut ff::ffi::AVStream;
        let n = ff::ffi::avformat_index_get_entries_count(st);
        for i in 0..n {
            let e = ff::ffi::avformat_index_get_entry(st, i);
            if !e.is_null() && (i64::from((*e).flags()) & i64::from(ff::ffi::AVINDEX_KEYFRAME)) != 0
            {
                out.push(secs((*e).timestamp, tb));
            }
        }
    }
    out.sort_by(f64::total_cmp);
    out
}

struct Probe {
    info: MediaInfo,
    video_index: usize,
    audio_index: Option<usize>,
    keyframes: Vec<f64>,
}

fn probe(path: &Path, input: &ff::format::context::Input) -> Result<Probe, MediaError> {
    let video = input
        .streams()
        .best(ff::media::Type::Video)
        .ok_or_else(|| MediaError::format(path, "no video stream"))?;
    let vpar = video.parameters();
    let vtb = video.time_base();
    let vctx = ff::codec::context::Context::from_parameters(vpar.clone())
        .map_err(|e| fferr(path, "video stream parameters", e))?;
    let vdec = vctx
        .decoder()
        .video()
        .map_err(|e| fferr(path, "video decoder", e))?;
    let (width, height) = (vdec.width(), vdec.height());
    if width == 0 || height == 0 {
        return Err(MediaError::format(path, "video stream has no frame size"));
    }
    let fps = rate_f64(video.avg_frame_rate())
        .or_else(|| rate_f64(video.rate()))
        .ok_or_else(|| MediaError::format(path, "video stream has no frame rate"))?;
    let start_ts = video.start_time();
    let video_start_s = if start_ts == ff::ffi::AV_NOPTS_VALUE {
        0.0
    } else {
        secs(start_ts, vtb)
    };
    let stream_dur = video.duration();
    let duration_s = if stream_dur > 0 && stream_dur != ff::ffi::AV_NOPTS_VALUE {
        secs(stream_dur, vtb)
    } else if input.duration() > 0 {
        input.duration() as f64 / f64::from(ff::ffi::AV_TIME_BASE) - video_start_s.max(0.0)
    } else {
        0.0
    };
    let num_frames = if video.frames() > 0 {
        video.frames() as usize
    } else {
        (duration_s * fps).round() as usize
    };
    if num_frames == 0 {
        return Err(MediaError::format(
            path,
            "video stream has neither a frame count nor a duration",
        ));
    }
    let keyframes = keyframe_times(&video);
    let video_codec = vpar.id().name().to_string();
    let video_index = video.index();
    let audio = input.streams().best(ff::media::Type::Audio);
    let (mut audio_codec, mut sample_rate, mut channels, mut audio_start_s) =
        (None, None, None, None);
    let mut audio_index = None;
    if let Some(a) = &audio {
        let apar = a.parameters();
        if let Ok(adec) = ff::codec::context::Context::from_parameters(apar.clone())
            .and_then(|c| c.decoder().audio())
        {
            audio_codec = Some(apar.id().name().to_string());
            sample_rate = Some(adec.rate());
            channels = Some(adec.channels());
            let st = a.start_time();
            audio_start_s = Some(if st == ff::ffi::AV_NOPTS_VALUE {
                0.0
            } else {
                secs(st, a.time_base()) - video_start_s
            });
            audio_index = Some(a.index());
        } else {
            tracing::warn!(file = %path.display(), "audio stream has no usable decoder; ignoring it");
        }
    }
    Ok(Probe {
        info: MediaInfo {
            container: input.format().name().to_string(),
            duration_s,
            video_codec,
            width,
            height,
            fps,
            num_frames,
            video_start_s,
            has_audio: audio_index.is_some(),
            audio_codec,
            sample_rate,
            channels,
            audio_start_s,
            keyframes: keyframes.len(),
        },
        video_index,
        audio_index,
        keyframes,
    })
}

/// Probes `path`: container, codecs, size, frame rate, duration, audio properties.
/// Reads only the headers (no decoding).
pub fn open(path: &Path) -> Result<MediaInfo, MediaError> {
    let input = open_input(path)?;
    Ok(probe(path, &input)?.info)
}

/// Video decoding state: demuxes packets of one stream and yields decoded frames.
struct VideoReader<'p> {
    path: &'p Path,
    input: ff::format::context::Input,
    decoder: ff::codec::decoder::Video,
    index: usize,
    tb: ff::Rational,
    eof_sent: bool,
    stats: DecodeStats,
    /// Sorted, disjoint presentation-time intervals (file clock, seconds) of the frames the
    /// sampling may use; `None` decodes everything.
    keep: Option<Vec<(f64, f64)>>,
    /// Whether the decoder is currently told to skip non-reference frames.
    skipping: bool,
}

impl VideoReader<'_> {
    /// The next decoded frame and its presentation time (file clock, seconds), or `None`
    /// at the end of the stream.
    fn next(&mut self) -> Result<Option<(ff::frame::Video, f64)>, MediaError> {
        let mut frame = ff::frame::Video::empty();
        loop {
            match self.decoder.receive_frame(&mut frame) {
                Ok(()) => {
                    self.stats.frames_decoded += 1;
                    let ts = frame.timestamp().or(frame.pts()).unwrap_or(0);
                    return Ok(Some((frame, secs(ts, self.tb))));
                }
                Err(ff::Error::Eof) => return Ok(None),
                Err(ff::Error::Other { errno }) if errno == ff::ffi::EAGAIN => {}
                Err(e) => {
                    // A broken frame: skip it, as players do.
                    self.stats.corrupt_packets += 1;
                    tracing::debug!(file = %self.path.display(), error = %e, "video frame decode error");
                    if self.stats.corrupt_packets > 1000 {
                        return Err(fferr(self.path, "too many video decode errors", e));
                    }
                }
            }
            if self.eof_sent {
                return Ok(None);
            }
            // Feed one packet of our stream.
            let mut packet = ff::Packet::empty();
            match packet.read(&mut self.input) {
                Ok(()) => {
                    if packet.stream() != self.index {
                        continue;
                    }
                    self.set_skip(packet.pts().map(|ts| secs(ts, self.tb)));
                    if let Err(e) = self.decoder.send_packet(&packet) {
                        self.stats.corrupt_packets += 1;
                        tracing::debug!(file = %self.path.display(), error = %e, "corrupt video packet skipped");
                        if self.stats.corrupt_packets > 1000 {
                            return Err(fferr(self.path, "too many corrupt video packets", e));
                        }
                    }
                }
                Err(ff::Error::Eof) => {
                    self.eof_sent = true;
                    // Draining: errors here only mean "already flushed".
                    let _ = self.decoder.send_eof();
                }
                Err(ff::Error::InvalidData) => {
                    self.stats.corrupt_packets += 1;
                    if self.stats.corrupt_packets > 1000 {
                        return Err(MediaError::format(self.path, "too many unreadable packets"));
                    }
                }
                Err(e) => return Err(fferr(self.path, "reading packets", e)),
            }
        }
    }

    /// Tells the decoder to skip the next packet's frame if it is a non-reference frame
    /// whose presentation time `pts` (seconds) lies in no kept interval. Packets without a
    /// time are always decoded.
    fn set_skip(&mut self, pts: Option<f64>) {
        let Some(keep) = &self.keep else {
            return;
        };
        let wanted = pts.is_none_or(|p| {
            // The first interval ending at or after p is the only one that can hold it.
            let k = keep.partition_point(|&(_, hi)| hi < p);
            keep.get(k).is_some_and(|&(lo, _)| lo <= p)
        });
        if wanted == self.skipping {
            self.skipping = !wanted;
            self.decoder.skip_frame(if wanted {
                ff::codec::discard::Discard::Default
            } else {
                ff::codec::discard::Discard::NonReference
            });
        }
    }

    /// Seeks to the key frame at or before `t` (file clock, seconds).
    fn seek(&mut self, t: f64) -> Result<(), MediaError> {
        let ts = (t.max(0.0) * f64::from(ff::ffi::AV_TIME_BASE)).floor() as i64;
        self.input
            .seek(ts, ..ts)
            .map_err(|e| fferr(self.path, &format!("seeking to {t:.3} s"), e))?;
        self.decoder.flush();
        self.eof_sent = false;
        self.stats.seeks += 1;
        Ok(())
    }
}

/// RGB conversion of decoded frames to the requested size.
struct Converter {
    scaler: Option<(ff::software::scaling::Context, ff::format::Pixel, u32, u32)>,
    size: FrameSize,
    out_w: u32,
    out_h: u32,
}

impl Converter {
    /// Writes `frame` as RGB `[out_h, out_w, 3]` into `dst`.
    fn convert(
        &mut self,
        path: &Path,
        frame: &ff::frame::Video,
        dst: &mut [u8],
    ) -> Result<(), MediaError> {
        let (fmt, w, h) = (frame.format(), frame.width(), frame.height());
        let (sw, sh, ow, oh) = self.size.plan(w, h)?;
        if (ow, oh) != (self.out_w, self.out_h) {
            return Err(MediaError::format(
                path,
                format!(
                    "frame size changed mid-stream to {w} x {h}; output would be {ow} x {oh} \
                     instead of {} x {}",
                    self.out_w, self.out_h
                ),
            ));
        }
        let stale = match &self.scaler {
            Some((_, f, a, b)) => (*f, *a, *b) != (fmt, w, h),
            None => true,
        };
        if stale {
            let ctx = ff::software::scaling::Context::get(
                fmt,
                w,
                h,
                ff::format::Pixel::RGB24,
                sw,
                sh,
                ff::software::scaling::Flags::BICUBIC,
            )
            .map_err(|e| fferr(path, "creating the RGB converter", e))?;
            self.scaler = Some((ctx, fmt, w, h));
        }
        let Some((scaler, ..)) = self.scaler.as_mut() else {
            return Err(MediaError::Invalid("internal: no scaler".into()));
        };
        let mut rgb = ff::frame::Video::empty();
        scaler
            .run(frame, &mut rgb)
            .map_err(|e| fferr(path, "converting a frame to RGB", e))?;
        let stride = rgb.stride(0);
        let data = rgb.data(0);
        let (x0, y0) = (((sw - ow) / 2) as usize, ((sh - oh) / 2) as usize);
        let row = ow as usize * 3;
        for y in 0..oh as usize {
            let s = (y0 + y) * stride + x0 * 3;
            dst[y * row..(y + 1) * row].copy_from_slice(&data[s..s + row]);
        }
        Ok(())
    }
}

/// The presentation-time intervals (file clock, seconds; sorted, merged) of the frames the
/// selection in [`read_frames`] may use for `indices`: around each target time `t`, the frame
/// within half a frame of it and the one before (shown at `t` when none is within half a
/// frame: `[t - 1.5 / fps, t + 0.5 / fps]`), and the last 3 frames of the stream (the
/// padding rule at the end compares with the last decoded frame).
fn keep_intervals(info: &MediaInfo, indices: &[usize]) -> Vec<(f64, f64)> {
    let (fps, start) = (info.fps, info.video_start_s);
    let mut iv: Vec<(f64, f64)> = indices
        .iter()
        .map(|&i| {
            let t = start + i as f64 / fps;
            (t - 1.5 / fps, t + 0.5 / fps)
        })
        .collect();
    let tail = start + info.num_frames.saturating_sub(3) as f64 / fps - 0.5 / fps;
    iv.push((tail, f64::INFINITY));
    iv.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(iv.len());
    for (lo, hi) in iv {
        match merged.last_mut() {
            Some(last) if lo <= last.1 => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    merged
}

fn read_frames(
    path: &Path,
    probe: &Probe,
    indices: &[usize],
    opts: &ReadOptions,
) -> Result<(Vec<u8>, usize, usize, DecodeStats), MediaError> {
    let info = &probe.info;
    let input = open_input(path)?;
    let stream = input
        .stream(probe.video_index)
        .ok_or_else(|| MediaError::format(path, "video stream vanished on reopening"))?;
    let tb = stream.time_base();
    let mut ctx = ff::codec::context::Context::from_parameters(stream.parameters())
        .map_err(|e| fferr(path, "video stream parameters", e))?;
    ctx.set_threading(ff::codec::threading::Config {
        kind: ff::codec::threading::Type::Frame,
        count: opts.threads,
        ..Default::default()
    });
    let mut decoder = ctx
        .decoder()
        .video()
        .map_err(|e| fferr(path, "opening the video decoder", e))?;
    decoder.set_packet_time_base(tb);
    let mut reader = VideoReader {
        path,
        input,
        decoder,
        index: probe.video_index,
        tb,
        eof_sent: false,
        stats: DecodeStats::default(),
        keep: opts.skip_unneeded.then(|| keep_intervals(info, indices)),
        skipping: false,
    };
    let (_, _, ow, oh) = opts.frame_size.plan(info.width, info.height)?;
    let mut conv = Converter {
        scaler: None,
        size: opts.frame_size,
        out_w: ow,
        out_h: oh,
    };
    let fsize = ow as usize * oh as usize * 3;
    let mut out = vec![0u8; indices.len() * fsize];
    let half = 0.5 / info.fps;
    let start = info.video_start_s;
    let target_time = |i: usize| start + indices[i] as f64 / info.fps;
    let kf = &probe.keyframes;

    // `pending`: a decoded frame not yet compared with the current target.
    let mut pending: Option<(ff::frame::Video, f64)> = None;
    // The last frame before the current target, in the current decoding run.
    let mut prev: Option<(ff::frame::Video, f64)> = None;
    // Time of the last frame the decoder gave, `None` right after a seek or at the start.
    let mut pos: Option<f64> = None;
    let mut k = 0;
    let mut back_off = 0.0f64;
    // The target for which the seek decision was made (made once per target).
    let mut decided: Option<usize> = None;
    while k < indices.len() {
        let t = target_time(k);
        if decided != Some(k) && pending.is_none() {
            decided = Some(k);
            let fresh = reader.stats.frames_decoded == 0 && reader.stats.seeks == 0;
            let want_seek = match opts.seek {
                SeekPolicy::DecodeThrough => false,
                SeekPolicy::SeekEach => true,
                SeekPolicy::Auto if kf.is_empty() => t - pos.unwrap_or(start) > 2.0,
                SeekPolicy::Auto => {
                    // A key frame after the current position (decoding from the very
                    // start needs no seek: the first key frame does not count) and at or
                    // before the target.
                    let after = if fresh {
                        kf[0]
                    } else {
                        pos.unwrap_or(f64::NEG_INFINITY) + MIN_SEEK_GAP_FRAMES / info.fps
                    };
                    kf.iter().any(|&x| x > after && x <= t + half)
                }
            };
            if want_seek {
                reader.seek(t)?;
                prev = None;
                pos = None;
            }
        }
        let next = match pending.take() {
            Some(f) => Some(f),
            None => reader.next()?,
        };
        let Some((frame, p)) = next else {
            break;
        };
        let first_of_run = pos.is_none();
        pos = Some(p);
        if p < t - half {
            prev = Some((frame, p));
            continue;
        }
        let chosen = if p <= t + half {
            let slot = &mut out[k * fsize..(k + 1) * fsize];
            conv.convert(path, &frame, slot)?;
            prev = Some((frame, p));
            true
        } else if let Some((pf, _)) = &prev {
            // Past the target: the previous frame is the one showing at `t`.
            let slot = &mut out[k * fsize..(k + 1) * fsize];
            conv.convert(path, pf, slot)?;
            pending = Some((frame, p));
            true
        } else if first_of_run && reader.stats.seeks > 0 && back_off < 8.0 {
            // The seek landed after the target (index times are decode times): retry
            // from further back.
            back_off = if back_off == 0.0 { 1.0 } else { back_off * 2.0 };
            reader.seek(t - back_off)?;
            pos = None;
            prev = None;
            continue;
        } else {
            // Nothing earlier exists (the stream starts late): the nearest frame.
            let slot = &mut out[k * fsize..(k + 1) * fsize];
            conv.convert(path, &frame, slot)?;
            pending = Some((frame, p));
            true
        };
        if chosen {
            back_off = 0.0;
            // Repeated indices reuse the frame.
            while k + 1 < indices.len() && indices[k + 1] == indices[k] {
                out.copy_within(k * fsize..(k + 1) * fsize, (k + 1) * fsize);
                k += 1;
            }
            k += 1;
        }
    }
    if k < indices.len() {
        // The stream ended before the wanted frame: pad if it is within 2 frames of the
        // last decoded one (frame counts in headers are often slightly off), else fail.
        let Some((last, lp)) = prev.or(pending) else {
            return Err(MediaError::format(
                path,
                "no video frame could be decoded (corrupt or truncated file?)",
            ));
        };
        let t = target_time(k);
        if t - lp > 2.0 / info.fps + half {
            return Err(MediaError::format(
                path,
                format!(
                    "the video stream ends at {:.3} s but frame {} ({:.3} s) was requested \
                     (truncated or corrupt file?)",
                    lp - start,
                    indices[k],
                    t - start
                ),
            ));
        }
        let slot_len = fsize;
        let mut tmp = vec![0u8; slot_len];
        conv.convert(path, &last, &mut tmp)?;
        for j in k..indices.len() {
            out[j * fsize..(j + 1) * fsize].copy_from_slice(&tmp);
            reader.stats.padded_frames += 1;
        }
    }
    Ok((out, ow as usize, oh as usize, reader.stats))
}

/// A mono libswresample resampler (soxr engine when available).
struct Swr {
    ptr: *mut ff::ffi::SwrContext,
}

impl Drop for Swr {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `swr_alloc` and is freed exactly once here.
        unsafe { ff::ffi::swr_free(&mut self.ptr) }
    }
}

impl Swr {
    fn new(in_rate: u32, out_rate: u32, soxr: bool) -> Option<Self> {
        use std::ffi::CString;
        let set = |ptr: *mut ff::ffi::SwrContext, k: &str, v: &str| -> bool {
            let (Ok(k), Ok(v)) = (CString::new(k), CString::new(v)) else {
                return false;
            };
            // SAFETY: `ptr` is a live SwrContext; the strings outlive the call.
            unsafe { ff::ffi::av_opt_set(ptr.cast(), k.as_ptr(), v.as_ptr(), 0) >= 0 }
        };
        // SAFETY: plain allocation; checked for null below.
        let ptr = unsafe { ff::ffi::swr_alloc() };
        if ptr.is_null() {
            return None;
        }
        let s = Self { ptr };
        let (ir, or) = (in_rate.to_string(), out_rate.to_string());
        let mut ok = set(ptr, "in_chlayout", "mono")
            && set(ptr, "out_chlayout", "mono")
            && set(ptr, "in_sample_rate", &ir)
            && set(ptr, "out_sample_rate", &or)
            && set(ptr, "in_sample_fmt", "flt")
            && set(ptr, "out_sample_fmt", "flt");
        if soxr {
            ok = ok && set(ptr, "resampler", "soxr") && set(ptr, "precision", "20");
        } else {
            ok = ok && set(ptr, "filter_size", "64") && set(ptr, "filter_type", "kaiser");
        }
        // SAFETY: `ptr` is a fully configured SwrContext.
        if !ok || unsafe { ff::ffi::swr_init(ptr) } < 0 {
            return None;
        }
        Some(s)
    }

    /// Resamples a whole buffer (and flushes).
    fn run(&mut self, input: &[f32], out_len: usize) -> Vec<f32> {
        let cap = out_len + 4096;
        let mut out = vec![0.0f32; cap];
        let mut got = 0usize;
        let in_ptr = input.as_ptr().cast::<u8>();
        // SAFETY: one plane each (mono, packed float); `out` has room for `cap` samples
        // and we pass the remaining capacity; `input` is readable for `input.len()`.
        unsafe {
            let mut o = out.as_mut_ptr().cast::<u8>();
            let n = ff::ffi::swr_convert(
                self.ptr,
                &mut o,
                cap as i32,
                &in_ptr as *const *const u8 as *mut *const u8,
                input.len() as i32,
            );
            if n > 0 {
                got += n as usize;
            }
            loop {
                let mut o = out.as_mut_ptr().add(got).cast::<u8>();
                let n = ff::ffi::swr_convert(
                    self.ptr,
                    &mut o,
                    (cap - got) as i32,
                    std::ptr::null_mut(),
                    0,
                );
                if n <= 0 || got + n as usize >= cap {
                    got += n.max(0) as usize;
                    break;
                }
                got += n as usize;
            }
        }
        out.truncate(got.min(cap));
        out.resize(out_len, 0.0);
        out
    }
}

/// Resamples mono `input` from `in_rate` to `out_rate` Hz with libswresample (soxr when
/// available); returns exactly `round(len * out_rate / in_rate)` samples, aligned so that
/// input time 0 is output time 0.
pub fn resample(input: &[f32], in_rate: u32, out_rate: u32) -> Result<Vec<f32>, MediaError> {
    init();
    if in_rate == 0 || out_rate == 0 {
        return Err(MediaError::Invalid(format!(
            "resample: rates must be > 0, got {in_rate} -> {out_rate}"
        )));
    }
    let out_len = (input.len() as f64 * f64::from(out_rate) / f64::from(in_rate)).round() as usize;
    if in_rate == out_rate {
        return Ok(input.to_vec());
    }
    let mut swr = match Swr::new(in_rate, out_rate, true) {
        Some(s) => s,
        None => {
            tracing::debug!("libswresample has no soxr engine; using its own sinc filter");
            Swr::new(in_rate, out_rate, false).ok_or_else(|| {
                MediaError::Invalid(format!(
                    "libswresample cannot resample {in_rate} Hz -> {out_rate} Hz"
                ))
            })?
        }
    };
    Ok(swr.run(input, out_len))
}

/// Appends the samples of `frame` (any FFmpeg sample format), averaged over channels,
/// into `buf` at position `at` (samples; negative positions are dropped).
fn mix_frame(frame: &ff::frame::Audio, buf: &mut [f32], at: i64) {
    use ff::format::Sample as S;
    use ff::format::sample::Type as T;
    let n = frame.samples();
    let ch = usize::from(frame.channels().max(1));
    let fmt = frame.format();
    let planar = frame.is_planar();
    let bytes = fmt.bytes();
    let read = |b: &[u8]| -> f32 {
        match fmt {
            S::U8(_) => (f32::from(b[0]) - 128.0) / 128.0,
            S::I16(_) => f32::from(i16::from_ne_bytes([b[0], b[1]])) / 32768.0,
            S::I32(_) => i32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as f32 / 2_147_483_648.0,
            S::I64(_) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(&b[..8]);
                (i64::from_ne_bytes(a) as f64 / 9.223_372_036_854_776e18) as f32
            }
            S::F32(_) => f32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
            S::F64(_) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(&b[..8]);
                f64::from_ne_bytes(a) as f32
            }
            S::None => 0.0,
        }
    };
    let inv = 1.0 / ch as f32;
    let _ = T::Packed;
    for i in 0..n {
        let pos = at + i as i64;
        if pos < 0 || pos as usize >= buf.len() {
            continue;
        }
        let mut s = 0.0f32;
        for c in 0..ch {
            let v = if planar {
                let d = frame.data(c);
                read(&d[i * bytes..(i + 1) * bytes])
            } else {
                let d = frame.data(0);
                let o = (i * ch + c) * bytes;
                read(&d[o..o + bytes])
            };
            s += v;
        }
        buf[pos as usize] = s * inv;
    }
}

/// Decodes the audio of `[t0, t1)` (seconds, file clock) as mono at `rate` Hz.
fn read_audio(
    path: &Path,
    audio_index: usize,
    t0: f64,
    t1: f64,
    rate: u32,
) -> Result<Vec<f32>, MediaError> {
    let mut input = open_input(path)?;
    let stream = input
        .stream(audio_index)
        .ok_or_else(|| MediaError::format(path, "audio stream vanished on reopening"))?;
    let tb = stream.time_base();
    let ctx = ff::codec::context::Context::from_parameters(stream.parameters())
        .map_err(|e| fferr(path, "audio stream parameters", e))?;
    let mut decoder = ctx
        .decoder()
        .audio()
        .map_err(|e| fferr(path, "opening the audio decoder", e))?;
    decoder.set_packet_time_base(tb);
    let in_rate = decoder.rate();
    if in_rate == 0 {
        return Err(MediaError::format(path, "audio stream has no sample rate"));
    }
    // Margins: the resampler needs context at both ends; AAC needs a frame of pre-roll
    // after a seek (its MDCT frames overlap).
    const MARGIN: f64 = 0.1;
    const PREROLL: f64 = 0.5;
    let buf_t0 = t0 - MARGIN;
    let len = ((t1 - t0 + 2.0 * MARGIN) * f64::from(in_rate)).ceil() as usize;
    let mut buf = vec![0.0f32; len];
    if t0 - PREROLL > 0.0 {
        let ts = ((t0 - PREROLL) * f64::from(ff::ffi::AV_TIME_BASE)) as i64;
        // A failed seek only means decoding from the start.
        if input.seek(ts, ..ts).is_err() {
            tracing::debug!(file = %path.display(), "audio seek failed; decoding from the start");
        }
    }
    let stop = t1 + MARGIN + PREROLL;
    let mut frame = ff::frame::Audio::empty();
    let mut next_pos: Option<i64> = None;
    let mut corrupt = 0usize;
    let mut done = false;
    let mut eof = false;
    while !done {
        if !eof {
            let mut packet = ff::Packet::empty();
            match packet.read(&mut input) {
                Ok(()) => {
                    if packet.stream() != audio_index {
                        continue;
                    }
                    if let Some(p) = packet.pts()
                        && secs(p, tb) > stop
                    {
                        eof = true;
                        let _ = decoder.send_eof();
                    } else if decoder.send_packet(&packet).is_err() {
                        corrupt += 1;
                    }
                }
                Err(ff::Error::Eof) => {
                    eof = true;
                    let _ = decoder.send_eof();
                }
                Err(ff::Error::InvalidData) => corrupt += 1,
                Err(e) => return Err(fferr(path, "reading audio packets", e)),
            }
            if corrupt > 1000 {
                return Err(MediaError::format(path, "too many corrupt audio packets"));
            }
        }
        loop {
            match decoder.receive_frame(&mut frame) {
                Ok(()) => {
                    let pos = match frame.pts().or(frame.timestamp()) {
                        Some(ts) => ((secs(ts, tb) - buf_t0) * f64::from(in_rate)).round() as i64,
                        None => next_pos.unwrap_or(0),
                    };
                    mix_frame(&frame, &mut buf, pos);
                    next_pos = Some(pos + frame.samples() as i64);
                }
                Err(ff::Error::Eof) => {
                    done = true;
                    break;
                }
                Err(ff::Error::Other { errno }) if errno == ff::ffi::EAGAIN => {
                    if eof {
                        // EAGAIN after EOF should not happen; do not spin.
                        done = true;
                    }
                    break;
                }
                Err(e) => {
                    corrupt += 1;
                    tracing::debug!(file = %path.display(), error = %e, "audio decode error");
                    if corrupt > 1000 {
                        return Err(fferr(path, "too many audio decode errors", e));
                    }
                    break;
                }
            }
        }
    }
    let res = resample(&buf, in_rate, rate)?;
    let off = (MARGIN * f64::from(rate)).round() as usize;
    let n = ((t1 - t0) * f64::from(rate)).round() as usize;
    let mut out: Vec<f32> = res.into_iter().skip(off).take(n).collect();
    out.resize(n, 0.0);
    Ok(out)
}

/// Reads the frames chosen by `opts.sampling` (converted to RGB at `opts.frame_size`) and
/// the matching audio (see the module docs for the timeline and the audio processing).
///
/// A file without an audio stream gives `audio: None`. Errors name the file.
pub fn read_clip(path: &Path, opts: &ReadOptions) -> Result<DecodedClip, MediaError> {
    let probe_input = open_input(path)?;
    let p = probe(path, &probe_input)?;
    drop(probe_input);
    let info = &p.info;
    if !(opts.skip_s.is_finite() && opts.skip_s >= 0.0) {
        return Err(MediaError::Invalid(format!(
            "skip_s must be finite and >= 0, got {}",
            opts.skip_s
        )));
    }
    let skip = ((opts.skip_s * info.fps).round() as usize).min(info.num_frames.saturating_sub(1));
    let indices: Vec<usize> = opts
        .sampling
        .frame_indices(info.num_frames - skip, info.fps)
        .map_err(|e| MediaError::format(path, e.to_string()))?
        .into_iter()
        .map(|i| i + skip)
        .collect();
    let (frames, width, height, stats) = read_frames(path, &p, &indices, opts)?;
    let frame_times_s: Vec<f64> = indices.iter().map(|&i| i as f64 / info.fps).collect();
    let audio_start_s = frame_times_s[0];
    let audio_end_s = match opts.audio_seconds {
        Some(s) if s.is_finite() && s > 0.0 => audio_start_s + s,
        Some(s) => {
            return Err(MediaError::Invalid(format!(
                "audio_seconds must be finite and > 0, got {s}"
            )));
        }
        None => frame_times_s[frame_times_s.len() - 1] + 1.0 / info.fps,
    };
    let audio_rate = opts.audio_rate.unwrap_or(16_000);
    let audio = match (opts.audio_rate, p.audio_index) {
        (Some(rate), Some(ai)) => Some(read_audio(
            path,
            ai,
            info.video_start_s + audio_start_s,
            info.video_start_s + audio_end_s,
            rate,
        )?),
        _ => None,
    };
    Ok(DecodedClip {
        info: p.info.clone(),
        width,
        height,
        frames,
        frame_indices: indices,
        frame_times_s,
        audio,
        audio_rate,
        audio_start_s,
        stats,
    })
}

/// The whole audio track of `path` as mono at `rate` Hz, sample 0 at the time of the first
/// video frame (audio before it is dropped; if the audio starts later, zeros lead), through
/// the end of the video. `None` when the file has no audio stream.
pub fn read_audio_track(path: &Path, rate: u32) -> Result<Option<Vec<f32>>, MediaError> {
    let input = open_input(path)?;
    let p = probe(path, &input)?;
    drop(input);
    let Some(ai) = p.audio_index else {
        return Ok(None);
    };
    let start = p.info.video_start_s;
    let dur = (p.info.num_frames as f64 / p.info.fps).max(p.info.duration_s);
    read_audio(path, ai, start, start + dur, rate).map(Some)
}

/// Convenience: the path a [`MediaError`] from this module is about, if any.
pub fn error_path(e: &MediaError) -> Option<PathBuf> {
    match e {
        MediaError::Io { path, .. } | MediaError::Format { path, .. } => Some(path.clone()),
        MediaError::Invalid(_) => None,
    }
}
