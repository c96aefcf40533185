//! TensorBoard event files: a scalar writer and a reader.
//!
//! File layout (TFRecord): a sequence of records, each
//! `u64 length (LE) | u32 masked_crc32c(length bytes) | data | u32 masked_crc32c(data)`, with
//! `masked(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8` (wrapping). Each record's data is a
//! `tensorflow.Event` protobuf. The first event carries `file_version = "brain.Event:2"` (and
//! `source_metadata.writer`), as TensorFlow and PyTorch's `SummaryWriter` write it; each later
//! event carries `wall_time`, `step` and a `Summary` with one `Value { tag, simple_value }`.
//!
//! The few protobuf fields are encoded and decoded by hand instead of with `prost`: prost
//! would need the `.proto` files and `protoc` (or a build script) for five fields, while the
//! wire format used here is three varints, a double, a float and nested length-delimited
//! messages. Field numbers (tensorflow/core/util/event.proto, summary.proto):
//! `Event { double wall_time = 1; int64 step = 2; string file_version = 3;
//! Summary summary = 5; SessionLog session_log = 7; SourceMetadata source_metadata = 10 }`,
//! `SessionLog { SessionStatus status = 1 }` (`START = 1`),
//! `SourceMetadata { string writer = 1 }`, `Summary { repeated Value value = 1 }`,
//! `Summary.Value { string tag = 1; float simple_value = 2 }`. Fields equal to their proto3
//! default (step 0) are omitted, as protobuf does, so the bytes match PyTorch's.
//!
//! The reader verifies both checksums of every record and skips unknown fields, so it reads
//! files written by TensorFlow, PyTorch or this writer (scalars only; other summaries are
//! reported as events without scalars).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{ReportError, Result, io_err};

/// The `file_version` of the first event, as TensorFlow writes it.
pub const FILE_VERSION: &str = "brain.Event:2";

/// The `source_metadata.writer` this writer records.
pub const WRITER_NAME: &str = "avfuse";

/// One scalar of a summary.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalarValue {
    /// Tag, e.g. `loss/train`.
    pub tag: String,
    /// The value (TensorBoard's `simple_value` is a 32-bit float).
    pub value: f32,
}

/// One decoded event.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Seconds since the Unix epoch.
    pub wall_time: f64,
    /// Global step (0 when absent).
    pub step: i64,
    /// `file_version`, present in the first event of a file.
    pub file_version: Option<String>,
    /// `source_metadata.writer`, when present.
    pub source_writer: Option<String>,
    /// The summary's `simple_value` scalars (empty for non-summary events).
    pub scalars: Vec<ScalarValue>,
    /// `session_log { status: START }`: a restart at `step`. TensorBoard then hides the
    /// events at `step` and later from the files before this one (PyTorch's
    /// `SummaryWriter(purge_step=...)` writes the same event).
    pub session_start: bool,
}

fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Encode an [`Event`] as protobuf (fields in field-number order, defaults omitted).
pub fn encode_event(e: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    if e.wall_time != 0.0 {
        put_key(&mut out, 1, 1);
        out.extend_from_slice(&e.wall_time.to_le_bytes());
    }
    if e.step != 0 {
        put_key(&mut out, 2, 0);
        // int64: negative values as their two's-complement 64-bit varint.
        put_varint(&mut out, e.step as u64);
    }
    if let Some(v) = &e.file_version {
        put_bytes(&mut out, 3, v.as_bytes());
    }
    if !e.scalars.is_empty() {
        let mut summary = Vec::new();
        for s in &e.scalars {
            let mut value = Vec::new();
            if !s.tag.is_empty() {
                put_bytes(&mut value, 1, s.tag.as_bytes());
            }
            // `simple_value` is a member of a oneof, so it is written even when 0.
            put_key(&mut value, 2, 5);
            value.extend_from_slice(&s.value.to_le_bytes());
            put_bytes(&mut summary, 1, &value);
        }
        put_bytes(&mut out, 5, &summary);
    }
    if e.session_start {
        // SessionLog { status: START (1) }.
        put_bytes(&mut out, 7, &[0x08, 0x01]);
    }
    if let Some(w) = &e.source_writer {
        let mut meta = Vec::new();
        put_bytes(&mut meta, 1, w.as_bytes());
        put_bytes(&mut out, 10, &meta);
    }
    out
}

/// Frame `data` as one TFRecord.
pub fn frame_record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

/// A protobuf field as read from the wire.
enum Field<'a> {
    Varint(u64),
    Fixed64([u8; 8]),
    Bytes(&'a [u8]),
    Fixed32([u8; 4]),
}

/// A cursor over protobuf bytes; errors are plain strings, wrapped with the file and offset by
/// the caller.
struct Wire<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Wire<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn varint(&mut self) -> std::result::Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or_else(|| format!("field of {n} bytes runs past the message"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// The next `(field number, value)`, or `None` at the end.
    fn next_field(&mut self) -> std::result::Result<Option<(u64, Field<'a>)>, String> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = key >> 3;
        let value = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => Field::Fixed64(self.take(8)?.try_into().map_err(|_| "fixed64")?),
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| "length overflow")?;
                Field::Bytes(self.take(n)?)
            }
            5 => Field::Fixed32(self.take(4)?.try_into().map_err(|_| "fixed32")?),
            w => return Err(format!("unsupported wire type {w} (field {field})")),
        };
        Ok(Some((field, value)))
    }
}

fn utf8(b: &[u8], what: &str) -> std::result::Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
}

/// Decode one `Event` message.
fn decode_event(data: &[u8]) -> std::result::Result<Event, String> {
    let mut e = Event {
        wall_time: 0.0,
        step: 0,
        file_version: None,
        source_writer: None,
        scalars: Vec::new(),
        session_start: false,
    };
    let mut w = Wire::new(data);
    while let Some((field, value)) = w.next_field()? {
        match (field, value) {
            (1, Field::Fixed64(b)) => e.wall_time = f64::from_le_bytes(b),
            (2, Field::Varint(v)) => e.step = v as i64,
            (3, Field::Bytes(b)) => e.file_version = Some(utf8(b, "file_version")?),
            (5, Field::Bytes(b)) => {
                let mut summary = Wire::new(b);
                while let Some((f, v)) = summary.next_field()? {
                    if let (1, Field::Bytes(vb)) = (f, v) {
                        let (mut tag, mut simple) = (None, None);
                        let mut value = Wire::new(vb);
                        while let Some((vf, vv)) = value.next_field()? {
                            match (vf, vv) {
                                (1, Field::Bytes(t)) => tag = Some(utf8(t, "tag")?),
                                (2, Field::Fixed32(x)) => simple = Some(f32::from_le_bytes(x)),
                                _ => {}
                            }
                        }
                        // Values without simple_value (images, histograms, tensors) are skipped.
                        if let Some(value) = simple {
                            e.scalars.push(ScalarValue {
                                tag: tag.unwrap_or_default(),
                                value,
                            });
                        }
                    }
                }
            }
            (7, Field::Bytes(b)) => {
                let mut log = Wire::new(b);
                while let Some((f, v)) = log.next_field()? {
                    if let (1, Field::Varint(status)) = (f, v) {
                        e.session_start = status == 1;
                    }
                }
            }
            (10, Field::Bytes(b)) => {
                let mut meta = Wire::new(b);
                while let Some((f, v)) = meta.next_field()? {
                    if let (1, Field::Bytes(s)) = (f, v) {
                        e.source_writer = Some(utf8(s, "source_metadata.writer")?);
                    }
                }
            }
            _ => {} // unknown or differently typed field: skipped, as protobuf does
        }
    }
    Ok(e)
}

/// Read every event of a TensorBoard event file, checking both CRCs of each record.
///
/// # Errors
/// [`ReportError::Io`] when the file cannot be read; [`ReportError::Event`] naming the byte
/// offset for a truncated record, a checksum mismatch or a malformed protobuf.
pub fn read_events(path: &Path) -> Result<Vec<Event>> {
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    parse_events(&bytes).map_err(|detail| ReportError::Event {
        path: path.to_path_buf(),
        detail,
    })
}

/// [`read_events`] on bytes in memory; the error is a description with the byte offset.
pub fn parse_events(bytes: &[u8]) -> std::result::Result<Vec<Event>, String> {
    let mut events = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let header = bytes
            .get(pos..pos + 12)
            .ok_or_else(|| format!("offset {pos}: truncated record header"))?;
        let (len_bytes, len_crc) = header.split_at(8);
        let stored = u32::from_le_bytes([len_crc[0], len_crc[1], len_crc[2], len_crc[3]]);
        if masked_crc(len_bytes) != stored {
            return Err(format!("offset {pos}: length checksum mismatch"));
        }
        let mut len8 = [0u8; 8];
        len8.copy_from_slice(len_bytes);
        let len = usize::try_from(u64::from_le_bytes(len8))
            .map_err(|_| format!("offset {pos}: record length overflow"))?;
        let start = pos + 12;
        let end = start
            .checked_add(len)
            .filter(|&e| e.checked_add(4).is_some_and(|e4| e4 <= bytes.len()))
            .ok_or_else(|| format!("offset {pos}: truncated record of {len} bytes"))?;
        let data = &bytes[start..end];
        let stored =
            u32::from_le_bytes([bytes[end], bytes[end + 1], bytes[end + 2], bytes[end + 3]]);
        if masked_crc(data) != stored {
            return Err(format!("offset {pos}: data checksum mismatch"));
        }
        events.push(decode_event(data).map_err(|e| format!("offset {pos}: {e}"))?);
        pos = end + 4;
    }
    Ok(events)
}

/// This machine's host name for the file name (`/proc/sys/kernel/hostname`, `$HOSTNAME`, or
/// `localhost`), reduced to characters safe in a file name.
fn hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let clean: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    if clean.is_empty() {
        "localhost".into()
    } else {
        clean
    }
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Appends scalar events to `events.out.tfevents.<unix seconds>.<host>` in a log directory
/// (a `.N` suffix is added if that name exists). TensorBoard reads the file while it grows;
/// each record is written whole, and [`EventWriter::flush`] (also called on drop) pushes
/// buffered records to the file.
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventWriter {
    /// Create the log directory if needed and a new event file in it, and write the
    /// `file_version` event.
    ///
    /// # Errors
    /// [`ReportError::Io`].
    pub fn create(logdir: &Path) -> Result<Self> {
        std::fs::create_dir_all(logdir).map_err(|e| io_err(logdir, e))?;
        let wall = now_seconds();
        let base = format!("events.out.tfevents.{}.{}", wall.floor() as u64, hostname());
        let mut n = 0;
        let (path, file) = loop {
            let name = if n == 0 {
                base.clone()
            } else {
                format!("{base}.{n}")
            };
            let path = logdir.join(name);
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(f) => break (path, f),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => return Err(io_err(&path, e)),
            }
        };
        let mut w = Self {
            path,
            out: BufWriter::new(file),
        };
        w.write_event(&Event {
            wall_time: wall,
            step: 0,
            file_version: Some(FILE_VERSION.into()),
            source_writer: Some(WRITER_NAME.into()),
            scalars: Vec::new(),
            session_start: false,
        })?;
        w.flush()?;
        tracing::debug!(path = %w.path.display(), "TensorBoard event file created");
        Ok(w)
    }

    /// [`create`](Self::create) for a run that restarts at `purge_step` (a resume from a
    /// checkpoint): the new file also records a session start at `purge_step`, so
    /// TensorBoard hides the events at `purge_step` and later that the earlier files of the
    /// log directory hold (logged after the checkpoint, before the interruption, and logged
    /// again by the resumed run).
    ///
    /// # Errors
    /// [`ReportError::Io`].
    pub fn create_resumed(logdir: &Path, purge_step: i64) -> Result<Self> {
        let mut w = Self::create(logdir)?;
        w.write_event(&Event {
            wall_time: now_seconds(),
            step: purge_step,
            file_version: None,
            source_writer: None,
            scalars: Vec::new(),
            session_start: true,
        })?;
        w.flush()?;
        Ok(w)
    }

    /// The event file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one event (any content) as a TFRecord.
    ///
    /// # Errors
    /// [`ReportError::Io`].
    pub fn write_event(&mut self, e: &Event) -> Result<()> {
        let record = frame_record(&encode_event(e));
        self.out
            .write_all(&record)
            .map_err(|err| io_err(&self.path, err))
    }

    /// Append a scalar at `step` with the current wall time.
    ///
    /// # Errors
    /// [`ReportError::Io`].
    pub fn add_scalar(&mut self, tag: &str, value: f32, step: i64) -> Result<()> {
        self.add_scalar_at(tag, value, step, now_seconds())
    }

    /// Append a scalar at `step` with an explicit `wall_time` (seconds since the epoch).
    ///
    /// # Errors
    /// [`ReportError::Io`].
    pub fn add_scalar_at(
        &mut self,
        tag: &str,
        value: f32,
        step: i64,
        wall_time: f64,
    ) -> Result<()> {
        self.write_event(&Event {
            wall_time,
            step,
            file_version: None,
            source_writer: None,
            scalars: vec![ScalarValue {
                tag: tag.to_string(),
                value,
            }],
            session_start: false,
        })
    }

    /// Push buffered records to the file.
    ///
    /// # Errors
    /// [`ReportError::Io`].
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| io_err(&self.path, e))
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        if let Err(e) = self.out.flush() {
            tracing::warn!(path = %self.path.display(), error = %e, "could not flush event file");
        }
    }
}
