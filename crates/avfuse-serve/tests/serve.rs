//! The real HTTP service on a loopback port, driven with real requests: valid clips, every
//! kind of bad input, over-size uploads, load beyond the queue, timeouts and a graceful
//! shutdown; plus the parity of the served preprocessing with `avfuse prepare`'s.
//!
//! The model is a tiny randomly initialised checkpoint whose layout (16 frames of 32 px,
//! 64 x 65 log-mel) is what the preprocessing makes of the fixture clips (2 s, 25 fps:
//! three windows of 16 frames).
#![cfg(feature = "ffmpeg")]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use avfuse_media::prepare::{PrepareOptions, prepare};
use avfuse_serve::engine::window_at;
use avfuse_serve::server::Server;
use avfuse_serve::testing::RandomCheckpoint;
use avfuse_serve::{EngineOptions, Inference, ServeConfig};
use avfuse_train::data::Dataset;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use tokio::sync::oneshot;

const T: usize = 16;
const S: usize = 32;

fn media(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../avfuse-media/tests/fixtures/media")
        .join(name)
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The tiny checkpoint saved in `dir`, loaded as an engine.
fn engine(dir: &Path) -> (PathBuf, Inference) {
    let ckpt = RandomCheckpoint::tiny(T, S).build().unwrap();
    let path = dir.join("tiny.avfc");
    ckpt.save(&path).unwrap();
    let inf = Inference::load(&path, &EngineOptions::default()).unwrap();
    (path, inf)
}

/// A running server and what the test needs to talk to it and stop it.
struct Running {
    base: String,
    client: reqwest::Client,
    temp: tempfile::TempDir,
    allow: tempfile::TempDir,
    _work: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<avfuse_serve::Result<()>>,
}

impl Running {
    async fn start(edit: impl FnOnce(&mut ServeConfig)) -> Self {
        let work = tempfile::tempdir().unwrap();
        let temp = tempfile::tempdir().unwrap();
        let allow = tempfile::tempdir().unwrap();
        let (_, inf) = engine(work.path());
        let mut cfg = ServeConfig {
            addr: "127.0.0.1:0".into(),
            temp_dir: Some(temp.path().to_path_buf()),
            allow_dir: Some(allow.path().to_path_buf()),
            max_upload_bytes: 100_000,
            workers: 2,
            queue_depth: 4,
            ..ServeConfig::default()
        };
        edit(&mut cfg);
        let server = Server::bind(cfg, Arc::new(inf)).await.unwrap();
        let base = format!("http://{}", server.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        Self {
            base,
            client: reqwest::Client::new(),
            temp,
            allow,
            _work: work,
            stop: Some(tx),
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn upload(&self, file: &Path) -> (StatusCode, Value) {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let part = Part::bytes(std::fs::read(file).unwrap()).file_name(name);
        let res = self
            .client
            .post(self.url("/v1/predict"))
            .multipart(Form::new().part("file", part))
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap())
    }

    async fn raw(&self, body: Vec<u8>, ctype: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.client.post(self.url("/v1/predict")).body(body);
        if let Some(c) = ctype {
            req = req.header("content-type", c);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        (status, res.json().await.unwrap())
    }

    async fn path(&self, json: &str) -> (StatusCode, Value) {
        let res = self
            .client
            .post(self.url("/v1/predict"))
            .header("content-type", "application/json")
            .body(json.to_string())
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap())
    }

    async fn health(&self) -> Value {
        let res = self.client.get(self.url("/healthz")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }

    fn temp_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.temp.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("server stops")
            .unwrap()
            .unwrap();
    }
}

/// A 4xx with the JSON error body `{error, detail}`.
fn assert_error(got: &(StatusCode, Value), status: u16, code: &str) {
    assert_eq!(got.0.as_u16(), status, "{}", got.1);
    assert_eq!(got.1["error"], code, "{}", got.1);
    let detail = got.1["detail"].as_str().unwrap_or_default();
    assert!(!detail.is_empty(), "{}", got.1);
    assert_eq!(got.1.as_object().unwrap().len(), 2, "{}", got.1);
}

fn check_prediction(v: &Value, name: &str, audio: bool) {
    assert_eq!(v["path"], name);
    let p = v["fake_probability"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p), "{v}");
    let label = v["label"].as_str().unwrap();
    assert_eq!(label, if p >= 0.5 { "fake" } else { "real" });
    // 50 frames at 25 fps: three windows of 16 frames (0.64 s each).
    let w = v["windows"].as_array().unwrap();
    assert_eq!(w.len(), 3, "{v}");
    for (k, win) in w.iter().enumerate() {
        let s = win["start_s"].as_f64().unwrap();
        let e = win["end_s"].as_f64().unwrap();
        assert!((s - 0.64 * k as f64).abs() < 1e-9, "{v}");
        assert!((e - s - 0.64).abs() < 1e-9, "{v}");
    }
    let mean = w
        .iter()
        .map(|x| x["fake_probability"].as_f64().unwrap())
        .sum::<f64>()
        / 3.0;
    assert!((mean - p).abs() < 1e-12, "{v}");
    assert_eq!(v["audio_present"], audio);
    let video = v["per_modality"]["video"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&video));
    if audio {
        let a = v["per_modality"]["audio"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&a));
    } else {
        assert!(v["per_modality"]["audio"].is_null(), "{v}");
        // Video only: the headline is the video-only prediction.
        assert!((video - p).abs() < 1e-12, "{v}");
    }
    assert!(v["faces_found"].as_u64().is_some());
    assert!(v["ms"].as_f64().unwrap() > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_clips_bad_input_and_limits() {
    let srv = Running::start(|_| {}).await;

    // Valid clips, three ways of sending them; one prediction whatever the way.
    let (st, v) = srv.upload(&media("h264_aac.mp4")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    check_prediction(&v, "h264_aac.mp4", true);
    let p = v["fake_probability"].as_f64().unwrap();
    let bytes = std::fs::read(media("h264_aac.mp4")).unwrap();
    let (st, raw) = srv.raw(bytes.clone(), Some("video/mp4")).await;
    assert_eq!(st, StatusCode::OK, "{raw}");
    check_prediction(&raw, "upload", true);
    assert_eq!(raw["fake_probability"].as_f64().unwrap(), p);
    let (st, oct) = srv
        .raw(bytes.clone(), Some("application/octet-stream"))
        .await;
    assert_eq!(st, StatusCode::OK, "{oct}");
    assert_eq!(oct["windows"], v["windows"]);
    std::fs::copy(media("h264_aac.mp4"), srv.allow.path().join("clip.mp4")).unwrap();
    let (st, by_path) = srv.path(r#"{"path": "clip.mp4"}"#).await;
    assert_eq!(st, StatusCode::OK, "{by_path}");
    check_prediction(&by_path, "clip.mp4", true);
    assert_eq!(by_path["fake_probability"].as_f64().unwrap(), p);
    let (st, other) = srv.upload(&media("mpeg4_aac.mp4")).await;
    assert_eq!(st, StatusCode::OK, "{other}");
    check_prediction(&other, "mpeg4_aac.mp4", true);

    // No audio track: 200, video only, and it says so.
    let (st, v) = srv.upload(&media("noaudio.mp4")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    check_prediction(&v, "noaudio.mp4", false);

    // Bad files: a 4xx JSON error each, naming the upload, never the temp file.
    for (file, code) in [
        (media("not_video.mp4"), "invalid_media"),
        (media("truncated.mp4"), "invalid_media"),
        (fixture("truncated_tail.mp4"), "invalid_media"),
        (fixture("zero_frames.mp4"), "no_frames"),
        (fixture("audio_only.m4a"), "no_video_stream"),
        (fixture("huge.mp4"), "frame_too_large"),
    ] {
        let got = srv.upload(&file).await;
        assert_error(&got, 422, code);
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let detail = got.1["detail"].as_str().unwrap();
        assert!(detail.contains(&name), "{detail}");
        assert!(!detail.contains("upload-"), "{detail}");
    }
    let got = srv
        .raw(
            std::fs::read(fixture("huge.mp4")).unwrap(),
            Some("video/mp4"),
        )
        .await;
    assert_error(&got, 422, "frame_too_large");
    assert!(got.1["detail"].as_str().unwrap().contains("7680x4320"));

    // Wrong or missing content type, malformed requests.
    assert_error(
        &srv.raw(bytes.clone(), Some("text/plain")).await,
        415,
        "unsupported_media_type",
    );
    assert_error(
        &srv.raw(bytes.clone(), None).await,
        415,
        "unsupported_media_type",
    );
    assert_error(
        &srv.raw(Vec::new(), Some("video/mp4")).await,
        400,
        "empty_upload",
    );
    let res = srv
        .client
        .post(srv.url("/v1/predict"))
        .multipart(Form::new().text("note", "no file here"))
        .send()
        .await
        .unwrap();
    let got = (res.status(), res.json().await.unwrap());
    assert_error(&got, 400, "missing_file");
    assert_error(&srv.path("{\"path\": 3}").await, 400, "bad_json");
    assert_error(&srv.path("not json").await, 400, "bad_json");

    // Over-size uploads (limit 100 000 bytes), raw and multipart.
    let big = vec![0u8; 300_000];
    assert_error(
        &srv.raw(big.clone(), Some("video/mp4")).await,
        413,
        "payload_too_large",
    );
    let res = srv
        .client
        .post(srv.url("/v1/predict"))
        .multipart(Form::new().part("file", Part::bytes(big).file_name("big.mp4")))
        .send()
        .await
        .unwrap();
    let got = (res.status(), res.json().await.unwrap());
    assert_error(&got, 413, "payload_too_large");

    // Server-side paths: only inside the allowed directory.
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.mp4");
    std::fs::copy(media("h264_aac.mp4"), &secret).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(&secret, srv.allow.path().join("link.mp4")).unwrap();
    assert_error(
        &srv.path(r#"{"path": "../secret.mp4"}"#).await,
        403,
        "path_not_allowed",
    );
    assert_error(
        &srv.path(r#"{"path": "a/../../b.mp4"}"#).await,
        403,
        "path_not_allowed",
    );
    let abs = serde_json::json!({"path": secret.display().to_string()}).to_string();
    assert_error(&srv.path(&abs).await, 403, "path_not_allowed");
    #[cfg(unix)]
    assert_error(
        &srv.path(r#"{"path": "link.mp4"}"#).await,
        403,
        "path_not_allowed",
    );
    assert_error(
        &srv.path(r#"{"path": "missing.mp4"}"#).await,
        404,
        "not_found",
    );
    let inside =
        serde_json::json!({"path": srv.allow.path().join("clip.mp4").display().to_string()});
    let (st, _) = srv.path(&inside.to_string()).await;
    assert_eq!(st, StatusCode::OK);

    // The other endpoints, and request ids.
    let h = srv.health().await;
    assert_eq!(h["status"], "ok");
    assert!(h["predicted"].as_u64().unwrap() >= 7, "{h}");
    let res = srv
        .client
        .get(srv.url("/v1/model"))
        .header("x-request-id", "test-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "test-123");
    let m: Value = res.json().await.unwrap();
    assert_eq!(m["name"], "tiny");
    for k in ["versions", "config", "metrics", "layout", "preprocessing"] {
        assert!(m[k].is_object(), "{k}: {m}");
    }
    assert_eq!(m["layout"]["frames"], T);
    assert_eq!(m["windows"]["aggregation"], "mean");
    let res = srv
        .client
        .get(srv.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert!(res.headers().contains_key("x-request-id"));
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(doc["paths"]["/v1/predict"]["post"].is_object());
    let res = srv.client.get(srv.url("/nope")).send().await.unwrap();
    assert_error(&(res.status(), res.json().await.unwrap()), 404, "not_found");
    let res = srv.client.get(srv.url("/v1/predict")).send().await.unwrap();
    assert_error(
        &(res.status(), res.json().await.unwrap()),
        405,
        "method_not_allowed",
    );

    // Every upload is gone, and the server still answers.
    assert!(srv.temp_files().is_empty(), "{:?}", srv.temp_files());
    assert_eq!(srv.health().await["status"], "ok");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duration_limit_and_timeout() {
    let srv = Running::start(|c| c.max_duration_s = 1.5).await;
    let got = srv.upload(&media("h264_aac.mp4")).await;
    assert_error(&got, 422, "clip_too_long");
    assert!(
        got.1["detail"].as_str().unwrap().contains("1.5 s"),
        "{}",
        got.1
    );
    srv.stop().await;

    // A request timeout shorter than any prediction: 504, the upload removed, and the
    // abandoned inference stops and frees its worker (the server keeps answering).
    let srv = Running::start(|c| {
        c.request_timeout_s = 0.02;
        c.workers = 1;
    })
    .await;
    for _ in 0..3 {
        let got = srv.upload(&media("h264_aac.mp4")).await;
        assert_error(&got, 504, "timeout");
    }
    assert!(srv.temp_files().is_empty(), "{:?}", srv.temp_files());
    // The cancelled inferences finish their current window and release the worker.
    let mut idle = false;
    for _ in 0..200 {
        if srv.health().await["running"] == 0 {
            idle = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(idle, "cancelled inferences never released their worker");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_beyond_the_queue_gets_503_and_nothing_else() {
    // One worker and one queue slot: of 12 simultaneous requests at most 2 are in the
    // service at once; the others must get 503 with Retry-After, and nothing else fails.
    let srv = Running::start(|c| {
        c.workers = 1;
        c.queue_depth = 1;
        c.retry_after_s = 2;
    })
    .await;
    let bytes = std::fs::read(media("h264_aac.mp4")).unwrap();
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let client = srv.client.clone();
        let url = srv.url("/v1/predict");
        let bytes = bytes.clone();
        tasks.push(tokio::spawn(async move {
            let res = client
                .post(url)
                .multipart(Form::new().part("file", Part::bytes(bytes).file_name("c.mp4")))
                .send()
                .await
                .unwrap();
            let status = res.status();
            let retry = res
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let body: Value = res.json().await.unwrap();
            (status, retry, body)
        }));
    }
    let (mut ok, mut busy) = (0, 0);
    for t in tasks {
        let (status, retry, body) = t.await.unwrap();
        match status.as_u16() {
            200 => {
                check_prediction(&body, "c.mp4", true);
                ok += 1;
            }
            503 => {
                assert_eq!(body["error"], "overloaded", "{body}");
                assert_eq!(retry.as_deref(), Some("2"));
                busy += 1;
            }
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert!(ok >= 1 && busy >= 1, "ok {ok}, busy {busy}");
    let h = srv.health().await;
    assert_eq!(h["rejected_busy"].as_u64().unwrap(), busy, "{h}");
    assert!(srv.temp_files().is_empty());
    // Capacity comes back once the load is gone.
    let (st, _) = srv.upload(&media("h264_aac.mp4")).await;
    assert_eq!(st, StatusCode::OK);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let srv = Running::start(|_| {}).await;
    let bytes = std::fs::read(media("h264_aac.mp4")).unwrap();
    let (first, rest) = bytes.split_at(bytes.len() / 2);
    let (first, rest) = (first.to_vec(), rest.to_vec());
    // A client that sends half its upload, then waits for a go.
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let body = futures_util::stream::unfold((0, Some(go_rx)), move |(i, go)| {
        let (first, rest) = (first.clone(), rest.clone());
        async move {
            match i {
                0 => Some((Ok::<_, std::io::Error>(first), (1, go))),
                1 => {
                    if let Some(g) = go {
                        let _ = g.await;
                    }
                    Some((Ok(rest), (2, None)))
                }
                _ => None,
            }
        }
    });
    let client = srv.client.clone();
    let url = srv.url("/v1/predict");
    let request = tokio::spawn(async move {
        let res = client
            .post(url)
            .header("content-type", "video/mp4")
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json::<Value>().await.unwrap())
    });
    // Wait until the server holds the request (admitted, body half read).
    let mut seen = false;
    for _ in 0..400 {
        if srv.health().await["waiting"].as_u64().unwrap_or(0) >= 1 {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(seen, "the request never reached the server");
    // Shutdown is asked while the request is in flight; then the client finishes.
    let Running {
        stop, task, base, ..
    } = srv;
    stop.unwrap().send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    go_tx.send(()).unwrap();
    let (status, v) = request.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{v}");
    check_prediction(&v, "upload", true);
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("server stops after its last request")
        .unwrap()
        .unwrap();
    // Nothing listens any more.
    assert!(
        reqwest::Client::new()
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_err()
    );
}

/// Window 0 of the served preprocessing is the clip `avfuse prepare` stores, and the model
/// input is what training's batcher makes of it.
#[test]
fn served_preprocessing_equals_prepare_and_the_training_batcher() {
    let work = tempfile::tempdir().unwrap();
    let (_, inf) = engine(work.path());
    let data = work.path().join("data");
    for (id, file, label) in [("a", "h264_aac.mp4", 1), ("b", "noaudio.mp4", 0)] {
        let d = data.join("test").join(id);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(media(file), d.join("video.mp4")).unwrap();
        std::fs::write(d.join("meta.json"), format!("{{\"label\": {label}}}")).unwrap();
    }
    let out = work.path().join("cache");
    let opts = PrepareOptions {
        data_root: data.clone(),
        out: out.clone(),
        frames_per_clip: T,
        crop_size: S,
        ..PrepareOptions::default()
    };
    let report = prepare(&opts, &|_, _| {}).unwrap();
    assert_eq!(report.splits[0].written, 2);
    let ds = Dataset::load(&out.join("test")).unwrap();
    assert_eq!(&ds.layout, &inf.meta().layout);
    for (i, file) in ["h264_aac.mp4", "noaudio.mp4"].iter().enumerate() {
        let w = window_at(&inf, &media(file), 0).unwrap();
        let per = T * 3 * S * S;
        assert_eq!(w.frames, ds.data.frames[i * per..(i + 1) * per], "{file}");
        let ml = ds.layout.n_mels * ds.layout.mel_frames;
        assert_eq!(w.mel, ds.data.mel[i * ml..(i + 1) * ml], "{file}");
        let presence = ds.presence(i);
        let norm = inf.meta().normalizer;
        let want = ds.host_batch(&[i], &[presence], &norm);
        let got = inf.host_batch(&[(&w, presence)]);
        assert_eq!(got.frames, want.frames, "{file}");
        assert_eq!(got.mel, want.mel, "{file}");
        assert_eq!(got.presence, want.presence, "{file}");
    }
    // The second window starts 16 frames later.
    let w1 = window_at(&inf, &media("h264_aac.mp4"), T).unwrap();
    assert!((w1.start_s - 0.64).abs() < 1e-12);
    assert_ne!(
        w1.frames,
        window_at(&inf, &media("h264_aac.mp4"), 0).unwrap().frames
    );

    // The split's prepare.json gives the same preprocessing as the layout defaults.
    let from_json = Inference::load(
        &work.path().join("tiny.avfc"),
        &EngineOptions {
            preprocessing: Some(out.join("test/prepare.json")),
            ..EngineOptions::default()
        },
    )
    .unwrap();
    assert_eq!(from_json.preprocessing(), inf.preprocessing());
}
