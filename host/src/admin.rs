//! The admin endpoint: HTTP on loopback, for `eddy status`, `eddy savepoint` and
//! `eddy stop`. It never reaches into the pipeline: it reads the status board and sends
//! control requests the pipeline answers at its next batch boundary.
//!
//! | request | answer |
//! |---|---|
//! | `GET /status` | the job's [`Status`] as JSON |
//! | `GET /metrics` | the job's metrics in the Prometheus text format |
//! | `POST /savepoint` with `{"dir": "..."}` | `{"savepoint": "<file>"}` |
//! | `POST /stop` with `{"savepoint": "..."}` (optional) | `{"stopped": true, "savepoint": ...}` |
//! | `POST /reload` with `{"stage": "...", "path": "...", "config": {"k": "v"}}` | the swap's report: version, pause, checkpoint |
//!
//! A reload prepares the new version here, off the stream (compile through the cache,
//! type-check, instantiate, `init`), and only then asks the pipeline to switch at its
//! next batch boundary; a version that fails any step is refused and the running one
//! goes on. Reloads are handled one at a time, in the order they arrive.
//!
//! It binds to loopback by default. With `[admin] token_file`, requests that change the
//! job (savepoint, stop) must carry `Authorization: Bearer <token>`; reading status and
//! metrics needs none. A `listen` address other than loopback requires a token.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::metrics::MetricsRegistry;
use crate::pipeline::{Control, ShadowAction, StatusBoard};
use crate::plugin::{PluginInstance, PluginRuntime, SideInputs};

/// How long a client waits for the job to answer (a savepoint of a large state takes time).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Clone)]
struct Shared {
    status: StatusBoard,
    control: Sender<Control>,
    metrics: MetricsRegistry,
    token: Option<Arc<str>>,
    reloader: Arc<Reloader>,
}

/// What the admin endpoint needs to prepare new plugin versions off the stream. The
/// running configs come from the status board (each stage's version history).
pub struct Reloader {
    runtime: Arc<PluginRuntime>,
    side_inputs: SideInputs,
    /// Where swapped-in components are kept for recovery (a job that checkpoints).
    components: Option<PathBuf>,
    /// Held while a reload runs, so reloads are handled one at a time, in order.
    queue: tokio::sync::Mutex<()>,
}

impl Reloader {
    /// A reloader preparing versions with `runtime`, reading `side_inputs`, keeping the
    /// components it swaps in under `components` (see `CheckpointDir::components`).
    pub fn new(
        runtime: Arc<PluginRuntime>,
        side_inputs: SideInputs,
        components: Option<PathBuf>,
    ) -> Self {
        Self {
            runtime,
            side_inputs,
            components,
            queue: tokio::sync::Mutex::new(()),
        }
    }
}

#[derive(Deserialize)]
struct ReloadRequest {
    stage: String,
    path: Option<PathBuf>,
    #[serde(default)]
    config: std::collections::BTreeMap<String, String>,
    /// Go back to the version before the running one (its component and config).
    #[serde(default)]
    rollback: bool,
    /// Run the new version in shadow mode instead of swapping it in.
    #[serde(default)]
    shadow: bool,
    /// Swap the stage's shadow in.
    #[serde(default)]
    promote: bool,
    /// Drop the stage's shadow.
    #[serde(default)]
    unshadow: bool,
}

#[derive(Deserialize)]
struct SavepointRequest {
    dir: PathBuf,
}

#[derive(Deserialize, Default)]
struct StopRequest {
    savepoint: Option<PathBuf>,
}

type Answer = (StatusCode, Json<Value>);

/// The admin routes over a pipeline's status board, metrics and control channel;
/// requests that change the job need `token` when there is one.
pub fn router(
    status: StatusBoard,
    metrics: MetricsRegistry,
    control: Sender<Control>,
    token: Option<String>,
    reloader: Reloader,
) -> Router {
    Router::new()
        .route("/status", get(status_handler))
        .route("/reload", post(reload_handler))
        .route("/metrics", get(metrics_handler))
        .route("/savepoint", post(savepoint_handler))
        .route("/stop", post(stop_handler))
        .with_state({
            let shared = Shared {
                status,
                control,
                metrics,
                token: token.map(Arc::from),
                reloader: Arc::new(reloader),
            };
            watch_plugin_files(&shared);
            shared
        })
}

async fn reload_handler(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Json(request): Json<ReloadRequest>,
) -> Answer {
    if let Err(refused) = authorize(&shared, &headers) {
        return refused;
    }
    let why = if request.rollback {
        "rollback (requested)"
    } else {
        "reload"
    };
    reload(&shared, request, why).await
}

/// Prepares the version a reload asks for off the stream and has the pipeline switch to
/// it at its next batch boundary; one reload at a time, in arrival order.
async fn reload(shared: &Shared, request: ReloadRequest, why: &str) -> Answer {
    let reloader = shared.reloader.clone();
    let _turn = reloader.queue.lock().await;
    if request.promote || request.unshadow {
        let action = if request.promote {
            ShadowAction::Promote
        } else {
            ShadowAction::Drop
        };
        return match ask(shared, |reply| Control::Shadow {
            stage: request.stage,
            action,
            reply,
        })
        .await
        {
            Ok(report) => (StatusCode::OK, Json(json!(report))),
            Err(e) => refused(e),
        };
    }
    let (running, before) = {
        let status = shared.status.lock().map(|s| s.clone()).unwrap_or_default();
        let Some(stage) = status.plugins.iter().find(|p| p.name == request.stage) else {
            let names: Vec<&str> = status.plugins.iter().map(|p| p.name.as_str()).collect();
            return (
                StatusCode::NOT_FOUND,
                Json(
                    json!({ "error": format!("the pipeline has no plugin stage `{}`; its stages: {}", request.stage, names.join(", ")) }),
                ),
            );
        };
        let history = &stage.history;
        (
            history.last().map(|r| r.config.clone()),
            history
                .len()
                .checked_sub(2)
                .map(|i| history[i].config.clone()),
        )
    };
    let next = if request.rollback {
        match before {
            Some(config) => config,
            None => return refused(format!("stage `{}` has no earlier version", request.stage)),
        }
    } else {
        let Some(mut next) = running else {
            return refused("the job has not started yet".into());
        };
        if let Some(path) = request.path {
            next.path = path;
        }
        for (key, value) in request.config {
            next.config.insert(key, toml::Value::String(value));
        }
        next
    };
    let (runtime, side_inputs, config, components) = (
        reloader.runtime.clone(),
        reloader.side_inputs.clone(),
        next.clone(),
        reloader.components.clone(),
    );
    let prepared = tokio::task::spawn_blocking(move || {
        let instance = PluginInstance::prepare(&runtime, &config, side_inputs)?;
        if let Some(dir) = components {
            keep_component(&dir, &config.path, &instance.plugin().hash);
        }
        anyhow::Ok(instance)
    })
    .await;
    let instance = match prepared {
        Ok(Ok(instance)) => instance,
        Ok(Err(e)) => return refused(format!("{e:#}")),
        Err(e) => return refused(e.to_string()),
    };
    let answer = if request.shadow {
        ask(shared, |reply| Control::Shadow {
            stage: request.stage,
            action: ShadowAction::Start(Box::new(instance)),
            reply,
        })
        .await
    } else {
        ask(shared, |reply| Control::Swap {
            stage: request.stage,
            instance: Box::new(instance),
            why: why.into(),
            reply,
        })
        .await
    };
    match answer {
        Ok(report) => (StatusCode::OK, Json(json!(report))),
        Err(e) => refused(e),
    }
}

/// How long a watched plugin file must be quiet before it is loaded.
const WATCH_QUIET: Duration = Duration::from_millis(200);

/// Watches the files of the stages with `watch = true` (all by default) and reloads a
/// stage when its file changed and has been quiet for a moment. A file that is not yet a
/// complete, valid component (half-written) is refused like any bad version; the running
/// version goes on, and the next change is tried again.
fn watch_plugin_files(shared: &Shared) {
    let status = shared.status.lock().map(|s| s.clone()).unwrap_or_default();
    let watched: Vec<(String, PathBuf)> = status
        .plugins
        .iter()
        .filter_map(|p| p.history.last().map(|r| (p.name.clone(), &r.config)))
        .filter(|(_, config)| config.watch)
        .map(|(name, config)| (name, config.path.clone()))
        .collect();
    if watched.is_empty() {
        return;
    }
    let (changed, mut changes) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let paths: Vec<PathBuf> = watched.iter().map(|(_, p)| p.clone()).collect();
    let watcher = match crate::file_watch::watch(&paths, "plugin files", WATCH_QUIET, move |i| {
        let _ = changed.send(i);
    }) {
        Ok(watcher) => watcher,
        Err(e) => {
            tracing::warn!("plugin files are not watched: {e:#}");
            return;
        }
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        let _watching = watcher;
        while let Some(i) = changes.recv().await {
            let (stage, path) = &watched[i];
            let request = ReloadRequest {
                stage: stage.clone(),
                path: Some(path.clone()),
                config: Default::default(),
                rollback: false,
                shadow: false,
                promote: false,
                unshadow: false,
            };
            let (code, Json(answer)) = reload(&shared, request, "file change").await;
            if code == StatusCode::OK {
                tracing::info!(
                    "stage `{stage}`: {} changed; now running version {}",
                    path.display(),
                    answer["version"].as_str().unwrap_or_default()
                );
            } else {
                tracing::warn!(
                    "stage `{stage}`: {} changed but was not loaded ({}); it is tried again when it changes",
                    path.display(),
                    answer["error"].as_str().unwrap_or_default()
                );
            }
        }
    });
}

/// Keeps a copy of the component at `path` (whose content hash is `hash`) in `dir`, for
/// recovery after a crash; a copy that cannot be made is logged (the job then resumes
/// with the pipeline file's version).
fn keep_component(dir: &Path, path: &Path, hash: &str) {
    let kept = dir.join(format!("{hash}.wasm"));
    if kept.exists() {
        return;
    }
    let result = std::fs::read(path)
        .map_err(anyhow::Error::from)
        .and_then(|bytes| {
            if crate::plugin::content_hash(&bytes) != hash {
                anyhow::bail!("the file changed while it was loaded");
            }
            std::fs::create_dir_all(dir)?;
            crate::durable::write_atomic_shared(&kept, &bytes)
        });
    if let Err(e) = result {
        tracing::warn!(
            "cannot keep {} for recovery ({e:#}); a restarted job resumes with the pipeline file's version",
            path.display()
        );
    }
}

/// A new version that was refused: the running one goes on.
fn refused(reason: String) -> Answer {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({ "error": format!("refused, the running version goes on: {reason}") })),
    )
}

/// Reads an admin token from its file (surrounding whitespace ignored).
pub fn read_token(path: &Path) -> Result<String> {
    let token = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the admin token file {}", path.display()))?;
    let token = token.trim();
    if token.is_empty() {
        bail!("the admin token file {} is empty", path.display());
    }
    Ok(token.to_owned())
}

/// Refuses a request that changes the job without the job's token.
fn authorize(shared: &Shared, headers: &HeaderMap) -> Result<(), Answer> {
    let Some(token) = &shared.token else {
        return Ok(());
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Compared without an early exit, so the time taken says nothing about the token.
    let matches = given.is_some_and(|given| {
        given.len() == token.len()
            && given
                .bytes()
                .zip(token.bytes())
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0
    });
    if matches {
        return Ok(());
    }
    Err((
        StatusCode::UNAUTHORIZED,
        Json(
            json!({ "error": "this job's admin endpoint needs its token to take a savepoint or stop the job: pass --token-file FILE (or set EDDY_ADMIN_TOKEN_FILE)" }),
        ),
    ))
}

async fn metrics_handler(
    State(shared): State<Shared>,
) -> ([(axum::http::header::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        shared.metrics.encode(),
    )
}

async fn status_handler(State(shared): State<Shared>) -> Answer {
    let status = shared.status.lock().map(|s| s.clone()).unwrap_or_default();
    (StatusCode::OK, Json(json!(status)))
}

/// Sends a request built around a reply channel and waits (off the async runtime) for
/// the pipeline's answer.
async fn ask<T: Send + 'static>(
    shared: &Shared,
    request: impl FnOnce(Sender<Result<T, String>>) -> Control,
) -> Result<T, String> {
    let (reply, answer) = channel();
    shared
        .control
        .send(request(reply))
        .map_err(|_| "the job is not running".to_owned())?;
    tokio::task::spawn_blocking(move || answer.recv_timeout(ANSWER_TIMEOUT))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|_| "the job did not answer".to_owned())?
}

fn failure(message: String) -> Answer {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({ "error": message })),
    )
}

async fn savepoint_handler(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Json(request): Json<SavepointRequest>,
) -> Answer {
    if let Err(refused) = authorize(&shared, &headers) {
        return refused;
    }
    match ask(&shared, |reply| Control::Savepoint {
        dir: request.dir,
        reply,
    })
    .await
    {
        Ok(path) => (StatusCode::OK, Json(json!({ "savepoint": path }))),
        Err(e) => failure(e),
    }
}

async fn stop_handler(
    State(shared): State<Shared>,
    headers: HeaderMap,
    request: Option<Json<StopRequest>>,
) -> Answer {
    if let Err(refused) = authorize(&shared, &headers) {
        return refused;
    }
    let savepoint = request.map(|Json(r)| r).unwrap_or_default().savepoint;
    match ask(&shared, |reply| Control::Stop { savepoint, reply }).await {
        Ok(path) => (
            StatusCode::OK,
            Json(json!({ "stopped": true, "savepoint": path })),
        ),
        Err(e) => failure(e),
    }
}

/// Sends one request to a job's admin endpoint (with its bearer `token`, if given) and
/// returns the JSON answer; an error answer becomes an error with the job's message.
pub fn request(
    addr: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value> {
    let mut stream = TcpStream::connect(addr).with_context(|| {
        format!("cannot reach a running job's admin endpoint at {addr}; is `eddy run` running, and is this its [admin] listen address?")
    })?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let authorization = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{authorization}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .context("cannot read the job's answer")?;
    let (head, payload) = response
        .split_once("\r\n\r\n")
        .context("malformed answer from the admin endpoint")?;
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("malformed answer from the admin endpoint")?;
    let value: Value = serde_json::from_str(payload)
        .with_context(|| format!("the admin endpoint answered {code}: {payload}"))?;
    if code != 200 {
        bail!(
            "the job answered {code}: {}",
            value["error"].as_str().unwrap_or(payload)
        );
    }
    Ok(value)
}
