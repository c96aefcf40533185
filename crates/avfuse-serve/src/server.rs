//! The HTTP service (axum on tokio): `POST /v1/predict`, `GET /healthz`, `GET /v1/model`,
//! `GET /openapi.json`.
//!
//! **Input.** `POST /v1/predict` takes one of:
//! - `multipart/form-data` with the video in the field `file`;
//! - a raw body with `Content-Type: video/*` or `application/octet-stream`;
//! - `application/json` `{"path": "clip.mp4"}`: a file on the server, only inside the
//!   allow-listed directory (`allow_dir`; relative paths are taken from it). The path may
//!   not contain `..`; it is canonicalised (symlinks resolved) and must still be inside.
//!
//! Any other content type is answered 415. Uploads are streamed to a temporary file in
//! `temp_dir` (never held whole in memory), at most `max_upload_bytes` (413 beyond), and
//! the file is removed when the request ends, whatever the outcome (an RAII guard owned by
//! the request: success, error, timeout or client disconnect).
//!
//! **Load.** A request is admitted only while fewer than `workers + queue_depth` are in
//! the service, else it is answered 503 with `Retry-After` at once. Admitted requests wait
//! for one of `workers` inference slots (default: one per core); inference runs on tokio's
//! blocking pool (`spawn_blocking`), never on the async executor. The whole request
//! (upload, wait, inference) has `request_timeout_s` (504 beyond); a timed-out or abandoned
//! inference is told to stop at its next window and keeps its slot until it has, so the
//! number of inferences running never exceeds `workers`.
//!
//! **Errors.** Every error is JSON `{"error": code, "detail": message}`: 400 malformed
//! request, 403 path outside the allow-list, 404 no such file, 413 upload too large, 415
//! unsupported content type, 422 not a usable video (`invalid_media`, `no_video_stream`,
//! `no_frames`, `clip_too_long`, `frame_too_large`, `no_usable_modality`), 503 queue full,
//! 504 timeout, 500 a fault of the service. A clip without audio is not an error: 200 with
//! `audio_present: false`.
//!
//! **Logs.** One span per request (tower-http's `TraceLayer`) with method, path and the
//! request id (`x-request-id`: the client's, else a fresh UUID, echoed in the response),
//! and one event per response with status and latency in milliseconds.
//!
//! **Shutdown.** On Ctrl-C or SIGTERM the listener closes and in-flight requests are
//! finished before [`run_until_signal`] returns.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::config::ServeConfig;
use crate::engine::{Inference, MediaLimits, Prediction};
use crate::error::{Result, ServeError};

/// Largest `application/json` request body.
const MAX_JSON_BYTES: usize = 64 * 1024;
/// After an upload is found too large, this much more of it is read and discarded so that
/// the client, still sending, receives the 413 instead of a reset connection.
const DRAIN_AFTER_LIMIT: u64 = 8 * 1024 * 1024;
/// Body read and discarded before a 503 or 415, for the same reason.
const DRAIN_SMALL: u64 = 1024 * 1024;
/// Longest time spent draining a rejected body.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// A JSON error response: `{"error": code, "detail": message}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            retry_after: None,
        }
    }

    fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }

    /// The error of a failed prediction; `temp` (an upload's temporary path) is replaced
    /// by the name the client gave in the message.
    fn from_serve(e: ServeError, temp: Option<&Path>, name: &str) -> Self {
        let status = match &e {
            _ if e.is_input_error() => StatusCode::UNPROCESSABLE_ENTITY,
            ServeError::NoFfmpeg => StatusCode::NOT_IMPLEMENTED,
            ServeError::Cancelled => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut detail = e.to_string();
        if let Some(t) = temp {
            detail = detail.replace(&t.display().to_string(), name);
        }
        Self::new(status, e.code(), detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.code, "detail": self.detail});
        let mut res = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        res
    }
}

/// Counters reported by `/healthz`.
#[derive(Debug, Default)]
struct Counters {
    predicted: AtomicU64,
    failed: AtomicU64,
    rejected_busy: AtomicU64,
}

/// Shared state of the handlers.
struct AppState {
    engine: Arc<Inference>,
    cfg: ServeConfig,
    limits: MediaLimits,
    admission: Arc<Semaphore>,
    admission_capacity: usize,
    workers: Arc<Semaphore>,
    n_workers: usize,
    temp_dir: PathBuf,
    /// The allowed directory as configured (made absolute) and canonicalised.
    allow_dir: Option<(PathBuf, PathBuf)>,
    model_info: serde_json::Value,
    openapi: serde_json::Value,
    started: Instant,
    counters: Counters,
}

/// A bound, not yet running server.
pub struct Server {
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    // Removed (with anything left in it) when the server is dropped.
    _temp: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Validates `cfg`, prepares the upload directory and the allow-list, and binds
    /// `cfg.addr`. Must be called inside a tokio runtime.
    pub async fn bind(cfg: ServeConfig, engine: Arc<Inference>) -> Result<Self> {
        cfg.validate()?;
        let (temp_dir, temp_guard) = match &cfg.temp_dir {
            Some(d) => {
                std::fs::create_dir_all(d).map_err(|e| ServeError::Io {
                    path: d.clone(),
                    source: e,
                })?;
                (d.clone(), None)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("avfuse-serve-")
                    .tempdir()
                    .map_err(|e| ServeError::Io {
                        path: std::env::temp_dir(),
                        source: e,
                    })?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let allow_dir = match &cfg.allow_dir {
            Some(d) => {
                let io = |e| ServeError::Io {
                    path: d.clone(),
                    source: e,
                };
                let canon = std::fs::canonicalize(d).map_err(io)?;
                let abs = std::path::absolute(d).map_err(io)?;
                Some((abs, canon))
            }
            None => None,
        };
        let addr: SocketAddr = cfg
            .addr
            .parse()
            .map_err(|_| ServeError::Config(format!("serve.addr = {:?}: not IP:PORT", cfg.addr)))?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| ServeError::Config(format!("cannot listen on {addr}: {e}")))?;
        let n_workers = cfg.effective_workers();
        let admission_capacity = n_workers + cfg.queue_depth;
        let model_info = engine.model_info();
        let state = Arc::new(AppState {
            limits: cfg.limits(),
            admission: Arc::new(Semaphore::new(admission_capacity)),
            admission_capacity,
            workers: Arc::new(Semaphore::new(n_workers)),
            n_workers,
            temp_dir,
            allow_dir,
            openapi: crate::openapi::document(&cfg),
            model_info,
            engine,
            cfg,
            started: Instant::now(),
            counters: Counters::default(),
        });
        Ok(Self {
            listener,
            state,
            _temp: temp_guard,
        })
    }

    /// The address actually bound (with the port the OS chose for port 0).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(|e| ServeError::Config(format!("listener address: {e}")))
    }

    /// Directory holding uploads in progress.
    pub fn temp_dir(&self) -> &Path {
        &self.state.temp_dir
    }

    /// Serves until `shutdown` completes, then finishes the requests in flight and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let app = router(self.state.clone());
        tracing::info!(
            addr = %self.local_addr()?,
            workers = self.state.n_workers,
            queue_depth = self.state.cfg.queue_depth,
            "avfuse serve listening"
        );
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| ServeError::Config(format!("server: {e}")))?;
        tracing::info!("avfuse serve stopped");
        Ok(())
    }
}

/// The routes with their layers (request ids, request logs, no default body limit: the
/// handlers count bytes themselves).
fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/predict", post(predict))
        .route("/healthz", get(healthz))
        .route("/v1/model", get(model))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::disable())
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!(
                        "request",
                        method = %req.method(),
                        path = %req.uri().path(),
                        request_id = %id,
                    )
                })
                .on_request(())
                .on_failure(())
                .on_response(|res: &Response, latency: Duration, _span: &tracing::Span| {
                    let ms = latency.as_secs_f64() * 1e3;
                    let status = res.status().as_u16();
                    if res.status().is_server_error() {
                        tracing::warn!(status, latency_ms = ms, "response");
                    } else {
                        tracing::info!(status, latency_ms = ms, "response");
                    }
                }),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// Serves `cfg` with `engine` on a new multi-threaded runtime until Ctrl-C or SIGTERM,
/// then finishes in-flight requests (blocking). Prints the bound address on stdout.
pub fn run_until_signal(cfg: ServeConfig, engine: Arc<Inference>) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("avfuse-serve")
        .build()
        .map_err(|e| ServeError::Config(format!("cannot start the async runtime: {e}")))?;
    let grace = Duration::from_secs_f64(cfg.request_timeout_s + 5.0);
    let result = rt.block_on(async move {
        let server = Server::bind(cfg, engine).await?;
        println!("avfuse serve listening on http://{}", server.local_addr()?);
        server.run(shutdown_signal()).await
    });
    // Inferences abandoned by a timeout stop at their next window; give them that long.
    rt.shutdown_timeout(grace);
    result
}

/// Completes on Ctrl-C or (Unix) SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested: finishing in-flight requests");
}

async fn healthz(State(st): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let in_service = st.admission_capacity - st.admission.available_permits();
    let running = st.n_workers - st.workers.available_permits();
    Json(serde_json::json!({
        "status": "ok",
        "uptime_s": st.started.elapsed().as_secs_f64(),
        "workers": st.n_workers,
        "queue_depth": st.cfg.queue_depth,
        "running": running,
        "waiting": in_service.saturating_sub(running),
        "predicted": st.counters.predicted.load(Ordering::Relaxed),
        "failed": st.counters.failed.load(Ordering::Relaxed),
        "rejected_busy": st.counters.rejected_busy.load(Ordering::Relaxed),
    }))
}

async fn model(State(st): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(st.model_info.clone())
}

async fn openapi(State(st): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(st.openapi.clone())
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint (see /openapi.json)",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this endpoint (see /openapi.json)",
    )
}

/// Sets the flag when dropped: tells an abandoned inference to stop.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Where the video of a request is.
enum Input {
    /// An upload in a temporary file, removed when this is dropped.
    Upload(tempfile::TempPath),
    /// A file in the allow-listed directory.
    Path(PathBuf),
}

impl Input {
    fn path(&self) -> &Path {
        match self {
            Input::Upload(t) => t,
            Input::Path(p) => p,
        }
    }
}

async fn predict(State(st): State<Arc<AppState>>, req: Request) -> Response {
    let Ok(admitted) = st.admission.clone().try_acquire_owned() else {
        st.counters.rejected_busy.fetch_add(1, Ordering::Relaxed);
        drain(req.into_body(), DRAIN_SMALL).await;
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!(
                "{} requests are in the service (workers + queue_depth); retry later",
                st.admission_capacity
            ),
        );
        e.retry_after = Some(st.cfg.retry_after_s);
        return e.into_response();
    };
    let limit = Duration::from_secs_f64(st.cfg.request_timeout_s);
    let res = match tokio::time::timeout(limit, handle_predict(&st, req)).await {
        Ok(Ok(p)) => {
            st.counters.predicted.fetch_add(1, Ordering::Relaxed);
            Json(p).into_response()
        }
        Ok(Err(e)) => {
            st.counters.failed.fetch_add(1, Ordering::Relaxed);
            tracing::info!(error = e.code, detail = %e.detail, "prediction refused");
            e.into_response()
        }
        Err(_) => {
            st.counters.failed.fetch_add(1, Ordering::Relaxed);
            ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                format!(
                    "the request took longer than {} s (request_timeout_s)",
                    st.cfg.request_timeout_s
                ),
            )
            .into_response()
        }
    };
    drop(admitted);
    res
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.split(';').next())
        .map(|s| s.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

async fn handle_predict(st: &Arc<AppState>, req: Request) -> Result<Prediction, ApiError> {
    let ctype = content_type(req.headers());
    let (input, name) = match ctype.as_str() {
        "multipart/form-data" => receive_multipart(st, req).await?,
        "application/json" => resolve_path(st, req).await?,
        t if t.starts_with("video/") || t == "application/octet-stream" => {
            receive_raw(st, req).await?
        }
        other => {
            drain(req.into_body(), DRAIN_SMALL).await;
            let got = if other.is_empty() {
                "no Content-Type".to_string()
            } else {
                format!("Content-Type {other}")
            };
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "{got}: send multipart/form-data (field `file`), a video/* or \
                     application/octet-stream body, or application/json {{\"path\": ...}}"
                ),
            ));
        }
    };
    // Wait for an inference slot (the queue); it moves into the blocking task and is
    // released when that task ends, even if this request is abandoned first.
    let worker = st
        .workers
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ApiError::internal("the worker pool is closed"))?;
    let cancel = Arc::new(AtomicBool::new(false));
    let _cancel_on_drop = CancelOnDrop(cancel.clone());
    let engine = st.engine.clone();
    let limits = st.limits.clone();
    let path = input.path().to_path_buf();
    let shown = name.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let _worker = worker;
        engine.predict_file(&path, &shown, &limits, Some(&cancel))
    })
    .await;
    let temp = match &input {
        Input::Upload(t) => Some(t.to_path_buf()),
        Input::Path(_) => None,
    };
    // `input` (the upload) is dropped, hence removed, when this function returns or is
    // dropped by the timeout.
    match joined {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(e)) => Err(ApiError::from_serve(e, temp.as_deref(), &name)),
        Err(e) => {
            tracing::error!(error = %e, "inference task failed");
            Err(ApiError::internal("the inference failed unexpectedly"))
        }
    }
}

/// A fresh temporary file in the upload directory: the async file to write and the guard
/// that removes it.
fn new_upload(st: &AppState) -> Result<(tokio::fs::File, tempfile::TempPath), ApiError> {
    let f = tempfile::Builder::new()
        .prefix("upload-")
        .tempfile_in(&st.temp_dir)
        .map_err(|e| ApiError::internal(format!("cannot create an upload file: {e}")))?;
    let (file, path) = f.into_parts();
    Ok((tokio::fs::File::from_std(file), path))
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the upload exceeds max_upload_bytes = {max}"),
    )
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse().ok())
}

/// Reads and discards up to `cap` bytes of `body` (at most [`DRAIN_TIMEOUT`]).
async fn drain(body: Body, cap: u64) {
    let mut stream = body.into_data_stream();
    let mut n = 0u64;
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while n <= cap {
            match stream.next().await {
                Some(Ok(chunk)) => n += chunk.len() as u64,
                _ => break,
            }
        }
    })
    .await;
}

async fn receive_raw(st: &AppState, req: Request) -> Result<(Input, String), ApiError> {
    let max = st.cfg.max_upload_bytes;
    if declared_length(req.headers()).is_some_and(|n| n > max) {
        let declared = declared_length(req.headers()).unwrap_or(0);
        if declared <= max + DRAIN_AFTER_LIMIT {
            drain(req.into_body(), DRAIN_AFTER_LIMIT).await;
        }
        return Err(too_large(max));
    }
    let (mut file, guard) = new_upload(st)?;
    let mut stream = req.into_body().into_data_stream();
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "upload_interrupted",
                format!("reading the body: {e}"),
            )
        })?;
        n += chunk.len() as u64;
        if n > max {
            let mut drained = 0u64;
            while drained <= DRAIN_AFTER_LIMIT {
                match stream.next().await {
                    Some(Ok(c)) => drained += c.len() as u64,
                    _ => break,
                }
            }
            return Err(too_large(max));
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| ApiError::internal(format!("writing the upload: {e}")))?;
    }
    finish_upload(file, n).await?;
    Ok((Input::Upload(guard), "upload".into()))
}

async fn finish_upload(mut file: tokio::fs::File, n: u64) -> Result<(), ApiError> {
    file.flush()
        .await
        .map_err(|e| ApiError::internal(format!("writing the upload: {e}")))?;
    if n == 0 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty_upload",
            "the upload is empty",
        ));
    }
    Ok(())
}

/// Keeps the last component of a client's file name, printable characters only.
fn sanitize_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let s: String = base.chars().filter(|c| !c.is_control()).take(200).collect();
    if s.is_empty() { "upload".into() } else { s }
}

async fn receive_multipart(st: &AppState, req: Request) -> Result<(Input, String), ApiError> {
    let max = st.cfg.max_upload_bytes;
    let bad = |e: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_multipart", e);
    if declared_length(req.headers()).is_some_and(|n| n > max + MAX_JSON_BYTES as u64) {
        let declared = declared_length(req.headers()).unwrap_or(0);
        if declared <= max + DRAIN_AFTER_LIMIT {
            drain(req.into_body(), DRAIN_AFTER_LIMIT).await;
        }
        return Err(too_large(max));
    }
    let mut mp = Multipart::from_request(req, &())
        .await
        .map_err(|e| bad(e.body_text()))?;
    while let Some(mut field) = mp.next_field().await.map_err(|e| bad(e.body_text()))? {
        if field.name() != Some("file") {
            continue;
        }
        let name = sanitize_name(field.file_name().unwrap_or("upload"));
        let (mut file, guard) = new_upload(st)?;
        let mut n = 0u64;
        while let Some(chunk) = field.chunk().await.map_err(|e| bad(e.body_text()))? {
            n += chunk.len() as u64;
            if n > max {
                let mut drained = 0u64;
                while drained <= DRAIN_AFTER_LIMIT {
                    match field.chunk().await {
                        Ok(Some(c)) => drained += c.len() as u64,
                        _ => break,
                    }
                }
                return Err(too_large(max));
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| ApiError::internal(format!("writing the upload: {e}")))?;
        }
        finish_upload(file, n).await?;
        return Ok((Input::Upload(guard), name));
    }
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        "missing_file",
        "the multipart body has no field named `file`",
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PathRequest {
    path: String,
}

async fn resolve_path(st: &AppState, req: Request) -> Result<(Input, String), ApiError> {
    let forbidden = |d: String| ApiError::new(StatusCode::FORBIDDEN, "path_not_allowed", d);
    let Some((given, allow)) = &st.allow_dir else {
        drain(req.into_body(), DRAIN_SMALL).await;
        return Err(forbidden(
            "server-side paths are disabled (start the server with --allow-dir)".into(),
        ));
    };
    let bytes = axum::body::to_bytes(req.into_body(), MAX_JSON_BYTES)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("a JSON request is at most {MAX_JSON_BYTES} bytes"),
            )
        })?;
    let r: PathRequest = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!("expected {{\"path\": \"...\"}}: {e}"),
        )
    })?;
    let p = PathBuf::from(&r.path);
    if r.path.is_empty() || p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(forbidden(format!(
            "{:?}: empty paths and `..` are not allowed",
            r.path
        )));
    }
    let joined = if p.is_absolute() { p } else { allow.join(p) };
    // Lexically inside first (so that nothing outside is even looked up), then for real.
    if !(joined.starts_with(allow) || joined.starts_with(given)) {
        return Err(forbidden(format!(
            "{:?} is outside the allowed directory",
            r.path
        )));
    }
    let canon = tokio::fs::canonicalize(&joined).await.map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{:?}: no such file in the allowed directory", r.path),
        )
    })?;
    if !canon.starts_with(allow) {
        return Err(forbidden(format!(
            "{:?} resolves (through a link) outside the allowed directory",
            r.path
        )));
    }
    if !canon.is_file() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{:?} is not a regular file", r.path),
        ));
    }
    Ok((Input::Path(canon), r.path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_reduced_to_their_last_component() {
        assert_eq!(sanitize_name("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_name("C:\\x\\clip.mp4"), "clip.mp4");
        assert_eq!(sanitize_name("a\u{0}b.mp4"), "ab.mp4");
        assert_eq!(sanitize_name(""), "upload");
        assert_eq!(sanitize_name("dir/"), "upload");
    }

    #[test]
    fn content_types_are_compared_without_parameters() {
        let mut h = HeaderMap::new();
        assert_eq!(content_type(&h), "");
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Multipart/Form-Data; boundary=x"),
        );
        assert_eq!(content_type(&h), "multipart/form-data");
    }
}
