//! TensorBoard event files: the reader parses a file written by PyTorch's `SummaryWriter`
//! (`tests/fixtures/torch_scalars.tfevents`, from `scripts/fixtures/check_tfevents.py make`),
//! and the writer, given the same scalars and wall times, produces records that decode to the
//! same fields and are byte-identical.

use std::path::Path;

use avfuse_report::tfevents::{
    FILE_VERSION, WRITER_NAME, encode_event, frame_record, parse_events,
};
use avfuse_report::{Event, EventWriter, ReportError, read_events};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    writer: String,
    scalars: Vec<Scalar>,
    read_back_by_tensorboard: Vec<ReadBack>,
}

#[derive(Deserialize)]
struct Scalar {
    tag: String,
    step: i64,
    value: f64,
}

#[derive(Deserialize)]
struct ReadBack {
    tag: String,
    step: i64,
    value: f64,
    wall_time: f64,
}

fn fixture_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))
}

fn load() -> (Fixture, Vec<u8>) {
    let json = std::fs::read_to_string(fixture_dir().join("torch_scalars.json")).unwrap();
    let bytes = std::fs::read(fixture_dir().join("torch_scalars.tfevents")).unwrap();
    (serde_json::from_str(&json).unwrap(), bytes)
}

#[test]
fn reads_pytorch_summary_writer_file() {
    let (fx, _) = load();
    assert_eq!(fx.writer, "torch.utils.tensorboard.SummaryWriter");
    let events = read_events(&fixture_dir().join("torch_scalars.tfevents")).unwrap();
    assert_eq!(events.len(), 1 + fx.scalars.len());
    let first = &events[0];
    assert_eq!(first.file_version.as_deref(), Some(FILE_VERSION));
    assert!(first.scalars.is_empty());
    assert!(first.wall_time > 1.6e9, "{}", first.wall_time);
    for (e, s) in events[1..].iter().zip(&fx.scalars) {
        assert_eq!(e.step, s.step);
        assert_eq!(e.scalars.len(), 1);
        assert_eq!(e.scalars[0].tag, s.tag);
        assert_eq!(e.scalars[0].value, s.value as f32, "{} @ {}", s.tag, s.step);
        assert!(e.file_version.is_none());
        // Same wall time as TensorBoard's own loader saw.
        let tb = fx
            .read_back_by_tensorboard
            .iter()
            .find(|r| r.tag == s.tag && r.step == s.step)
            .unwrap();
        assert_eq!(e.wall_time, tb.wall_time);
        assert_eq!(f64::from(e.scalars[0].value), tb.value);
    }
}

#[test]
fn writes_records_identical_to_pytorch() {
    let (fx, torch_bytes) = load();
    let torch_events = parse_events(&torch_bytes).unwrap();
    // Re-encode PyTorch's events with this crate: same records, byte for byte (the first
    // event carries PyTorch's own writer name in source_metadata, which we copy).
    let mut ours = Vec::new();
    for e in &torch_events {
        ours.extend(frame_record(&encode_event(e)));
    }
    assert_eq!(ours, torch_bytes);

    // Through the public writer: the same scalars with the same wall times.
    let dir = tempfile::tempdir().unwrap();
    let path = {
        let mut w = EventWriter::create(dir.path()).unwrap();
        for (e, s) in torch_events[1..].iter().zip(&fx.scalars) {
            w.add_scalar_at(&s.tag, s.value as f32, s.step, e.wall_time)
                .unwrap();
        }
        w.path().to_path_buf()
    }; // dropped: flushed
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with("events.out.tfevents."), "{name}");
    let written = std::fs::read(&path).unwrap();
    let ours = parse_events(&written).unwrap();
    assert_eq!(ours.len(), torch_events.len());
    // The header event: our own writer name, our own creation time.
    assert_eq!(ours[0].file_version.as_deref(), Some(FILE_VERSION));
    assert_eq!(ours[0].source_writer.as_deref(), Some(WRITER_NAME));
    for (i, (a, b)) in ours.iter().zip(&torch_events).enumerate().skip(1) {
        assert_eq!(a.wall_time, b.wall_time, "event {i}: wall_time");
        assert_eq!(a.step, b.step, "event {i}: step");
        assert_eq!(a.file_version, b.file_version, "event {i}: file_version");
        assert_eq!(a.scalars, b.scalars, "event {i}: summary");
    }
    // Scalar records are byte-identical to PyTorch's: skip both header records and compare.
    let skip_first = |b: &[u8]| {
        let len = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
        b[12 + len + 4..].to_vec()
    };
    assert_eq!(skip_first(&written), skip_first(&torch_bytes));
}

#[test]
fn round_trip_edge_values() {
    let events = vec![
        Event {
            wall_time: 1.5,
            step: -3,
            file_version: None,
            source_writer: None,
            scalars: vec![avfuse_report::ScalarValue {
                tag: "neg/step".into(),
                value: f32::NAN,
            }],
            session_start: false,
        },
        Event {
            wall_time: 0.0,
            step: i64::MAX,
            file_version: None,
            source_writer: None,
            scalars: vec![
                avfuse_report::ScalarValue {
                    tag: "a".into(),
                    value: f32::INFINITY,
                },
                avfuse_report::ScalarValue {
                    tag: "ünïcödé/τ".into(),
                    value: 0.0,
                },
            ],
            session_start: false,
        },
    ];
    let mut bytes = Vec::new();
    for e in &events {
        bytes.extend(frame_record(&encode_event(e)));
    }
    let back = parse_events(&bytes).unwrap();
    assert_eq!(back[0].step, -3);
    assert!(back[0].scalars[0].value.is_nan());
    assert_eq!(back[1], events[1]);
}

#[test]
fn corrupt_files_are_rejected() {
    let (_, torch_bytes) = load();
    // Flip one bit in the data of the second record: data checksum mismatch.
    let first_len = u64::from_le_bytes(torch_bytes[..8].try_into().unwrap()) as usize;
    let second = 12 + first_len + 4;
    let mut bad = torch_bytes.clone();
    bad[second + 12 + 3] ^= 0x01;
    let err = parse_events(&bad).unwrap_err();
    assert!(
        err.contains("data checksum") && err.contains(&format!("offset {second}")),
        "{err}"
    );
    // A corrupted length: length checksum mismatch.
    let mut bad = torch_bytes.clone();
    bad[second] ^= 0x40;
    assert!(parse_events(&bad).unwrap_err().contains("length checksum"));
    // Truncated in the middle of a record.
    let err = parse_events(&torch_bytes[..torch_bytes.len() - 3]).unwrap_err();
    assert!(err.contains("truncated"), "{err}");
    let err = parse_events(&torch_bytes[..5]).unwrap_err();
    assert!(err.contains("truncated record header"), "{err}");
    // Through the file API: the error names the file.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("events.out.tfevents.1.x");
    std::fs::write(&p, &torch_bytes[..20]).unwrap();
    match read_events(&p) {
        Err(ReportError::Event { path, .. }) => assert_eq!(path, p),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        read_events(&dir.path().join("missing")),
        Err(ReportError::Io { .. })
    ));
    assert_eq!(parse_events(&[]).unwrap(), Vec::<Event>::new());
}

#[test]
fn two_writers_in_one_directory_get_distinct_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = EventWriter::create(dir.path()).unwrap();
    let b = EventWriter::create(dir.path()).unwrap();
    assert_ne!(a.path(), b.path());
    drop((a, b));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

/// A session start (what `SummaryWriter(purge_step=7)` writes) encodes as TensorBoard's
/// protobuf does: the bytes below are `Event(wall_time=1.5, step=7,
/// session_log=SessionLog(status=SessionLog.START)).SerializeToString()` from
/// tensorboard 2.21's `event_pb2`.
#[test]
fn session_start_matches_tensorboards_encoding() {
    let e = Event {
        wall_time: 1.5,
        step: 7,
        file_version: None,
        source_writer: None,
        scalars: Vec::new(),
        session_start: true,
    };
    let bytes = encode_event(&e);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "09000000000000f83f10073a020801");
    let back = parse_events(&frame_record(&bytes)).unwrap();
    assert_eq!(back, vec![e]);
}

/// `create_resumed` writes the header, then the session start at the purge step.
#[test]
fn resumed_writer_records_the_purge_step() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = EventWriter::create_resumed(dir.path(), 301).unwrap();
    w.add_scalar("train/loss", 0.5, 302).unwrap();
    w.flush().unwrap();
    let events = read_events(w.path()).unwrap();
    assert_eq!(events.len(), 3);
    assert!(events[0].file_version.is_some() && !events[0].session_start);
    assert!(events[1].session_start && events[1].step == 301);
    assert!(!events[2].session_start && events[2].step == 302);
}
