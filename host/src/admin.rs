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
//! A job run as partition tasks (a streaming Kafka source, or `parallelism` above 1) is
//! served as one job ([`Served::Tasks`]): the status sums the tasks' counters and lists
//! each task, the metrics carry a `task` label, and a reload switches every task of the
//! process, or none: when one task refuses, those that had switched go back, and a task
//! started later (a partition assigned afterwards) starts with the version every task
//! took (one started while a swap went to the others is swapped after them). A savepoint
//! of such a job is every task's savepoint at its next batch boundary, each in
//! `<dir>/tasks/<task>` (what `--from-savepoint` seeds the store from); `stop` ends every
//! task with a final checkpoint, or with its savepoint there. Each process of a group has
//! its own endpoint, and its savepoint holds the tasks it runs.
//!
//! It binds to loopback by default. With `[admin] token_file`, requests that change the
//! job (savepoint, stop) must carry `Authorization: Bearer <token>`; reading status and
//! metrics needs none. A `listen` address other than loopback requires a token.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::PluginConfig;
use crate::metrics::{Metrics, MetricsRegistry};
use crate::pipeline::{Control, ShadowAction, Status, StatusBoard, SwapReport};
use crate::plugin::{PluginInstance, PluginRuntime, SideInputs};
use crate::workers::TaskBoard;

/// How long a client waits for the job to answer (a savepoint of a large state takes time).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Clone)]
struct Shared {
    served: Served,
    token: Option<Arc<str>>,
    reloader: Arc<Reloader>,
}

/// One running pipeline as the admin endpoint reaches it: its status board, metrics and
/// control channel, and what preparing a new plugin version for it needs.
#[derive(Clone)]
pub struct Attached {
    /// Its status, refreshed by the pipeline.
    pub status: StatusBoard,
    /// Its metrics.
    pub metrics: MetricsRegistry,
    /// Where its control requests go.
    pub control: Sender<Control>,
    /// The side inputs its plugins read.
    pub side_inputs: SideInputs,
    /// Where the components swapped into it are kept (a job that checkpoints).
    pub components: Option<PathBuf>,
}

impl Attached {
    /// Reaches `pipeline`, built from `config`; returns the channel its run answers
    /// control requests from.
    pub fn to(
        pipeline: &crate::pipeline::Pipeline,
        config: &crate::config::PipelineConfig,
    ) -> (Self, Receiver<Control>) {
        let (control, requests) = channel();
        let attached = Self {
            status: pipeline.status(),
            metrics: pipeline.metrics(),
            control,
            side_inputs: pipeline.side_inputs(),
            components: config
                .checkpoint
                .as_ref()
                .map(|c| crate::checkpoint::components_dir(&c.dir)),
        };
        (attached, requests)
    }

    fn status(&self) -> Status {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// What an admin endpoint serves: one pipeline, or the tasks of a job run as workers
/// (a streaming Kafka source, or `parallelism` above 1), which it reaches all at once.
#[derive(Clone)]
pub enum Served {
    /// A job run as one pipeline.
    Pipeline(Attached),
    /// A job run as workers: the tasks live in this process.
    Tasks(Arc<TaskBoard>),
}

impl Served {
    /// What requests go to: the pipeline, or each live task by name.
    fn targets(&self) -> Vec<(Option<String>, Attached)> {
        match self {
            Self::Pipeline(pipeline) => vec![(None, pipeline.clone())],
            Self::Tasks(board) => board
                .tasks()
                .into_iter()
                .map(|(name, task)| (Some(name), task))
                .collect(),
        }
    }

    fn status(&self) -> Value {
        match self {
            Self::Pipeline(pipeline) => json!(pipeline.status()),
            Self::Tasks(board) => tasks_status(board),
        }
    }

    fn metrics(&self) -> String {
        match self {
            Self::Pipeline(pipeline) => pipeline.metrics.encode(),
            Self::Tasks(board) => labelled_by_task(
                board
                    .tasks()
                    .into_iter()
                    .map(|(name, task)| (name, task.metrics.encode())),
            ),
        }
    }

    /// The stages whose files are watched: (stage, file).
    fn watched(&self) -> Vec<(String, PathBuf)> {
        let running: Vec<PluginConfig> = match self {
            Self::Pipeline(pipeline) => pipeline
                .status()
                .plugins
                .iter()
                .filter_map(|p| p.history.last().map(|r| r.config.clone()))
                .collect(),
            Self::Tasks(board) => board.plugins().to_vec(),
        };
        running
            .into_iter()
            .filter(|config| config.watch)
            .map(|config| (config.name, config.path))
            .collect()
    }
}

/// The status of a job run as tasks: the tasks' counters summed, the lowest watermark,
/// the plugin stages as the first task runs them, and each task's own status.
fn tasks_status(board: &TaskBoard) -> Value {
    let tasks: Vec<(String, Status)> = board
        .tasks()
        .into_iter()
        .map(|(name, task)| (name, task.status()))
        .collect();
    let mut metrics: Option<Metrics> = None;
    for (_, status) in &tasks {
        match &mut metrics {
            Some(total) => total.absorb(&status.metrics),
            None => metrics = Some(status.metrics),
        }
    }
    json!({
        "state": if board.stopping() { "stopping" } else { "running" },
        "metrics": metrics.unwrap_or_default(),
        "watermark": tasks.iter().filter_map(|(_, s)| s.watermark).min(),
        "open_windows": tasks.iter().map(|(_, s)| s.open_windows).sum::<u64>(),
        "plugins": tasks.first().map(|(_, s)| json!(s.plugins)).unwrap_or(json!([])),
        "tasks": tasks.iter().map(|(name, status)| json!({ "task": name, "status": status })).collect::<Vec<_>>(),
    })
}

/// Joins the metrics of several tasks (Prometheus text, as [`MetricsRegistry::encode`]
/// writes it) into one exposition: each family once, each sample labelled with its task.
fn labelled_by_task(tasks: impl IntoIterator<Item = (String, String)>) -> String {
    // Families in the order first seen: their header lines and samples.
    let mut families: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
    for (task, text) in tasks {
        let label = format!(
            "task=\"{}\"",
            task.replace('\\', "\\\\").replace('"', "\\\"")
        );
        let mut family = None;
        let mut fresh = false;
        for line in text.lines() {
            if line == "# EOF" {
                continue;
            }
            if let Some(header) = line.strip_prefix("# ") {
                let name = header.split(' ').nth(1).unwrap_or_default();
                let at = match families.iter().position(|(n, _, _)| n == name) {
                    Some(at) => {
                        fresh = fresh && family == Some(at);
                        at
                    }
                    None => {
                        families.push((name.to_owned(), Vec::new(), Vec::new()));
                        fresh = true;
                        families.len() - 1
                    }
                };
                family = Some(at);
                if fresh {
                    families[at].1.push(line.to_owned());
                }
                continue;
            }
            let Some(at) = family else { continue };
            let sample = match line.find(['{', ' ']) {
                Some(i) if line.as_bytes()[i] == b'{' => {
                    format!("{}{{{label},{}", &line[..i], &line[i + 1..])
                }
                Some(i) => format!("{}{{{label}}}{}", &line[..i], &line[i..]),
                None => continue,
            };
            families[at].2.push(sample);
        }
    }
    let mut text = String::new();
    for (_, header, samples) in families {
        for line in header.iter().chain(&samples) {
            text.push_str(line);
            text.push('\n');
        }
    }
    text.push_str("# EOF\n");
    text
}

/// What the admin endpoint needs to prepare new plugin versions off the stream. The
/// running configs come from the status board (each stage's version history).
pub struct Reloader {
    runtime: Arc<PluginRuntime>,
    /// Held while a reload runs, so reloads are handled one at a time, in order.
    queue: tokio::sync::Mutex<()>,
}

impl Reloader {
    /// A reloader preparing versions with `runtime`.
    pub fn new(runtime: Arc<PluginRuntime>) -> Self {
        Self {
            runtime,
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

/// The admin routes over what `served` is; requests that change the job need `token`
/// when there is one.
pub fn router(served: Served, token: Option<String>, reloader: Reloader) -> Router {
    Router::new()
        .route("/status", get(status_handler))
        .route("/reload", post(reload_handler))
        .route("/metrics", get(metrics_handler))
        .route("/savepoint", post(savepoint_handler))
        .route("/stop", post(stop_handler))
        .with_state({
            let shared = Shared {
                served,
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

/// Prepares the version a reload asks for off the stream and has the pipeline (every
/// task, for a job run as tasks) switch to it at its next batch boundary; one reload at
/// a time, in arrival order. When one task refuses, the tasks that had switched go back
/// to the version before, so all tasks run one version.
async fn reload(shared: &Shared, request: ReloadRequest, why: &str) -> Answer {
    let _turn = shared.reloader.queue.lock().await;
    let targets = shared.served.targets();
    let Some((_, first)) = targets.first() else {
        return refused(
            "no partition task runs in this process yet (the group has assigned it no \
             partition); `eddy status` lists the tasks once it has"
                .into(),
        );
    };
    let status = first.status();
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
    let running = history.last().map(|r| r.config.clone());
    let before = history
        .len()
        .checked_sub(2)
        .map(|i| history[i].config.clone());
    let Some(running) = running else {
        return refused("the job has not started yet".into());
    };
    let stage = request.stage.clone();
    if request.promote || request.unshadow {
        let answers = ask_each(&targets, |_, reply| Control::Shadow {
            stage: stage.clone(),
            action: if request.promote {
                ShadowAction::Promote
            } else {
                ShadowAction::Drop
            },
            reply,
        })
        .await;
        let undo = if request.promote {
            Undo::SwapBack(running)
        } else {
            Undo::Nothing
        };
        return settle(shared, &stage, answers, undo).await;
    }
    let next = if request.rollback {
        match before {
            Some(config) => config,
            None => return refused(format!("stage `{stage}` has no earlier version")),
        }
    } else {
        let mut next = running.clone();
        if let Some(path) = request.path {
            next.path = path;
        }
        for (key, value) in request.config {
            next.config.insert(key, toml::Value::String(value));
        }
        next
    };
    let instances = match prepare(shared, &targets, &next).await {
        Ok(instances) => instances,
        Err(e) => return refused(e),
    };
    let answers = if request.shadow {
        hand_out(&targets, instances, |instance, reply| Control::Shadow {
            stage: stage.clone(),
            action: ShadowAction::Start(instance),
            reply,
        })
        .await
    } else {
        hand_out(&targets, instances, |instance, reply| Control::Swap {
            stage: stage.clone(),
            instance,
            why: why.into(),
            reply,
        })
        .await
    };
    let undo = if request.shadow {
        Undo::DropShadow
    } else {
        Undo::SwapBack(running)
    };
    settle(shared, &stage, answers, undo).await
}

/// Starts `config` off the stream for each target (compiled once, through the cache),
/// and keeps its component where each target's recovery looks for it.
async fn prepare(
    shared: &Shared,
    targets: &[(Option<String>, Attached)],
    config: &PluginConfig,
) -> Result<Vec<PluginInstance>, String> {
    let (runtime, targets, config) = (
        shared.reloader.runtime.clone(),
        targets.to_vec(),
        config.clone(),
    );
    tokio::task::spawn_blocking(move || {
        let mut kept = std::collections::BTreeSet::new();
        targets
            .iter()
            .map(|(_, target)| {
                let instance =
                    PluginInstance::prepare(&runtime, &config, target.side_inputs.clone())?;
                if let Some(dir) = &target.components {
                    if kept.insert(dir.clone()) {
                        keep_component(dir, &config.path, &instance.plugin().hash);
                    }
                }
                Ok(instance)
            })
            .collect::<Result<Vec<_>>>()
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("{e:#}"))
}

/// Each target's (by task name) answer to a change.
type Answers = Vec<(Option<String>, Result<SwapReport, String>)>;

/// A request on its way: where its answer comes, or why it could not be sent.
type Sent<T> = Result<Receiver<Result<T, String>>, String>;

/// Sends a request built around a reply channel to `target`.
fn send<T>(
    target: &Attached,
    request: impl FnOnce(Sender<Result<T, String>>) -> Control,
) -> Sent<T> {
    let (reply, answer) = channel();
    target
        .control
        .send(request(reply))
        .map_err(|_| "the job is not running".to_owned())?;
    Ok(answer)
}

/// Waits (off the async runtime) for the answers to requests sent to several targets.
async fn answers<T: Send + 'static>(
    sent: Vec<(Option<String>, Sent<T>)>,
) -> Vec<(Option<String>, Result<T, String>)> {
    tokio::task::spawn_blocking(move || {
        sent.into_iter()
            .map(|(name, sent)| {
                let answer = sent.and_then(|answer| {
                    answer
                        .recv_timeout(ANSWER_TIMEOUT)
                        .map_err(|_| "the job did not answer".to_owned())?
                });
                (name, answer)
            })
            .collect()
    })
    .await
    .unwrap_or_default()
}

/// Sends one request to one target and waits for its answer.
async fn ask<T: Send + 'static>(
    target: &Attached,
    request: impl FnOnce(Sender<Result<T, String>>) -> Control,
) -> Result<T, String> {
    let mut answered = answers(vec![(None, send(target, request))]).await;
    answered
        .pop()
        .map_or(Err("the job did not answer".into()), |(_, a)| a)
}

/// What undoes a change some tasks made when another refused it.
enum Undo {
    /// Swap back to this version.
    SwapBack(PluginConfig),
    /// Drop the shadow just started.
    DropShadow,
    /// Nothing to undo.
    Nothing,
}

/// The answer to a change sent to every target. When all took it, a swap is recorded
/// for tasks started later; when one refused, the others are brought back, so all tasks
/// run one version, and the answer names the task that refused.
async fn settle(shared: &Shared, stage: &str, answers: Answers, undo: Undo) -> Answer {
    let refusal = answers
        .iter()
        .find_map(|(name, a)| a.as_ref().err().map(|e| (name.clone(), e.clone())));
    let Some((refuser, reason)) = refusal else {
        let mut answers = answers;
        if let Served::Tasks(board) = &shared.served {
            if let Some(config) = answers
                .iter()
                .find_map(|(_, a)| a.as_ref().ok()?.config.clone())
            {
                board.record_swap(config.clone());
                answers.extend(catch_up(shared, stage, &answers, &config).await);
            }
        }
        return match answers.as_slice() {
            [(None, Ok(report))] => (StatusCode::OK, Json(json!(report))),
            _ => (StatusCode::OK, Json(tasks_report(stage, &answers))),
        };
    };
    let Some(refuser) = refuser else {
        return refused(reason);
    };
    // The tasks that took the change go back.
    let took: Vec<(Option<String>, Attached)> = shared
        .served
        .targets()
        .into_iter()
        .filter(|(name, _)| answers.iter().any(|(n, a)| n == name && a.is_ok()))
        .collect();
    let why = format!("rollback (task {refuser} refused the new version)");
    let back = match undo {
        Undo::SwapBack(config) => swap_into(shared, &took, stage, &config, &why).await,
        Undo::DropShadow => {
            ask_each(&took, |_, reply| Control::Shadow {
                stage: stage.to_owned(),
                action: ShadowAction::Drop,
                reply,
            })
            .await
        }
        Undo::Nothing => Vec::new(),
    };
    let stuck: Vec<String> = back
        .iter()
        .filter_map(|(name, a)| Some(format!("{} ({})", name.as_deref()?, a.as_ref().err()?)))
        .collect();
    let undone = if stuck.is_empty() {
        format!("the {} tasks that had taken it went back", took.len())
    } else {
        format!(
            "tasks that could not go back, see `eddy status`: {}",
            stuck.join(", ")
        )
    };
    refused(format!("task {refuser}: {reason}; {undone}"))
}

/// Swaps `config` into the tasks that started while a swap went to the others (a
/// partition assigned meanwhile, built with the version before); returns their answers.
async fn catch_up(
    shared: &Shared,
    stage: &str,
    answered: &[(Option<String>, Result<SwapReport, String>)],
    config: &PluginConfig,
) -> Answers {
    let late: Vec<(Option<String>, Attached)> = shared
        .served
        .targets()
        .into_iter()
        .filter(|(name, _)| answered.iter().all(|(n, _)| n != name))
        .collect();
    if late.is_empty() {
        return Vec::new();
    }
    swap_into(
        shared,
        &late,
        stage,
        config,
        "reload (the task started during the swap)",
    )
    .await
}

/// Prepares `config` for each of `targets` and swaps it in with `why`; returns their
/// answers (each the preparation's error, if it failed).
async fn swap_into(
    shared: &Shared,
    targets: &[(Option<String>, Attached)],
    stage: &str,
    config: &PluginConfig,
    why: &str,
) -> Answers {
    let instances = match prepare(shared, targets, config).await {
        Ok(instances) => instances,
        Err(e) => {
            return targets
                .iter()
                .map(|(name, _)| (name.clone(), Err(e.clone())))
                .collect()
        }
    };
    hand_out(targets, instances, |instance, reply| Control::Swap {
        stage: stage.to_owned(),
        instance,
        why: why.to_owned(),
        reply,
    })
    .await
}

/// Sends each target the request `request` builds for it (by task name) around its
/// reply channel (all first, so they act at about the same time), then waits for every
/// answer.
async fn ask_each<T: Send + 'static>(
    targets: &[(Option<String>, Attached)],
    request: impl Fn(Option<&str>, Sender<Result<T, String>>) -> Control,
) -> Vec<(Option<String>, Result<T, String>)> {
    let sent = targets
        .iter()
        .map(|(name, target)| {
            let sent = send(target, |reply| request(name.as_deref(), reply));
            (name.clone(), sent)
        })
        .collect();
    answers(sent).await
}

/// Hands each target its own prepared instance in the request `request` builds (all
/// first), then waits for every answer.
async fn hand_out(
    targets: &[(Option<String>, Attached)],
    instances: Vec<PluginInstance>,
    request: impl Fn(Box<PluginInstance>, Sender<Result<SwapReport, String>>) -> Control,
) -> Answers {
    let sent = targets
        .iter()
        .zip(instances)
        .map(|((name, target), instance)| {
            (
                name.clone(),
                send(target, |reply| request(Box::new(instance), reply)),
            )
        })
        .collect();
    answers(sent).await
}

/// The answer to a change every task took: the version, the longest pause, and each
/// task's report.
fn tasks_report(stage: &str, answers: &[(Option<String>, Result<SwapReport, String>)]) -> Value {
    let reports: Vec<(&str, &SwapReport)> = answers
        .iter()
        .filter_map(|(name, a)| Some((name.as_deref()?, a.as_ref().ok()?)))
        .collect();
    json!({
        "stage": stage,
        "version": reports.first().map(|(_, r)| r.version.clone()),
        "pause_us": reports.iter().map(|(_, r)| r.pause_us).max(),
        "tasks": reports.iter().map(|(name, r)| {
            let mut report = json!(r);
            report["task"] = json!(name);
            report
        }).collect::<Vec<_>>(),
    })
}

/// How long a watched plugin file must be quiet before it is loaded.
const WATCH_QUIET: Duration = Duration::from_millis(200);

/// Watches the files of the stages with `watch = true` (all by default) and reloads a
/// stage when its file changed and has been quiet for a moment. A file that is not yet a
/// complete, valid component (half-written) is refused like any bad version; the running
/// version goes on, and the next change is tried again.
fn watch_plugin_files(shared: &Shared) {
    let watched = shared.served.watched();
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
        shared.served.metrics(),
    )
}

async fn status_handler(State(shared): State<Shared>) -> Answer {
    (StatusCode::OK, Json(shared.served.status()))
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
    let dir = request.dir;
    let pipeline = match &shared.served {
        Served::Pipeline(pipeline) => pipeline,
        Served::Tasks(_) => {
            let answered = each_task_savepoint(&shared.served, &dir, |dir, reply| {
                Control::Savepoint { dir, reply }
            })
            .await;
            return match answered {
                Ok(tasks) => (
                    StatusCode::OK,
                    Json(json!({ "savepoint": dir, "tasks": tasks })),
                ),
                Err(e) => failure(e),
            };
        }
    };
    match ask(pipeline, |reply| Control::Savepoint { dir, reply }).await {
        Ok(path) => (StatusCode::OK, Json(json!({ "savepoint": path }))),
        Err(e) => failure(e),
    }
}

/// Why a job of tasks that runs none yet takes no savepoint.
const NO_TASKS: &str = "the job runs no task yet (the group has not assigned it partitions); \
    try again once `eddy status` lists tasks";

/// Asks every task for its savepoint in `<dir>/tasks/<task>` (the request `request`
/// builds), all first, then waits: each task's savepoint file, or which tasks failed and
/// why.
async fn each_task_savepoint<T: serde::Serialize + Send + 'static>(
    served: &Served,
    dir: &Path,
    request: impl Fn(PathBuf, Sender<Result<T, String>>) -> Control,
) -> Result<Value, String> {
    let targets = served.targets();
    if targets.is_empty() {
        return Err(NO_TASKS.into());
    }
    let answered = ask_each(&targets, |name, reply| {
        request(
            crate::workers::task_dir(dir, name.unwrap_or_default()),
            reply,
        )
    })
    .await;
    let mut files = serde_json::Map::new();
    let mut failed = Vec::new();
    for (name, answer) in answered {
        let name = name.unwrap_or_default();
        match answer {
            Ok(file) => {
                files.insert(name, json!(file));
            }
            Err(e) => failed.push(format!("task {name}: {e}")),
        }
    }
    if !failed.is_empty() {
        return Err(format!(
            "the savepoint in {} is incomplete: {}",
            dir.display(),
            failed.join("; ")
        ));
    }
    Ok(Value::Object(files))
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
    let (pipeline, savepoint) = match (&shared.served, savepoint) {
        (Served::Pipeline(pipeline), savepoint) => (pipeline, savepoint),
        (Served::Tasks(board), None) => {
            board.stop();
            return (
                StatusCode::OK,
                Json(json!({ "stopped": true, "savepoint": null })),
            );
        }
        (Served::Tasks(board), Some(_)) if board.tasks().is_empty() => {
            return failure(NO_TASKS.into()); // the job goes on: nothing could be saved
        }
        (Served::Tasks(board), Some(dir)) => {
            // Each task stops right after its savepoint; then the process ends.
            let answered = each_task_savepoint(&shared.served, &dir, |dir, reply| Control::Stop {
                savepoint: Some(dir),
                reply,
            })
            .await;
            board.stop();
            return match answered {
                Ok(tasks) => (
                    StatusCode::OK,
                    Json(json!({ "stopped": true, "savepoint": dir, "tasks": tasks })),
                ),
                Err(e) => failure(e),
            };
        }
    };
    match ask(pipeline, |reply| Control::Stop { savepoint, reply }).await {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;

    use super::*;
    use crate::config::PipelineConfig;
    use crate::pipeline::PluginStatus;
    use crate::plugin::{CompiledCache, VersionRecord};

    /// A job of the filter as stage `big`, run as tasks.
    fn job() -> PipelineConfig {
        PipelineConfig::parse(&format!(
            "[source]\nkind = \"generator\"\npartitions = 2\n[[plugin]]\nname = \"big\"\n\
             path = \"{}\"\nwatch = false\nconfig = {{ field = \"amount\", op = \">=\", value = \"20\" }}\n\
             [sink]\nkind = \"null\"\n",
            eddy_example_artifacts::FILTER_COMPONENT
        ))
        .unwrap()
    }

    /// What a task running `config` for stage `big` shows the admin endpoint (its
    /// control channel leads nowhere).
    fn fake_attached(config: &PluginConfig) -> Attached {
        let status = Status {
            plugins: vec![PluginStatus {
                name: "big".into(),
                history: vec![VersionRecord {
                    version: "v1".into(),
                    since_ms: 0,
                    why: "start".into(),
                    pause_us: 0,
                    checkpoint: None,
                    config: config.clone(),
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        Attached {
            status: Arc::new(Mutex::new(status)),
            metrics: MetricsRegistry::new(&Default::default(), []),
            control: channel().0,
            side_inputs: SideInputs::default(),
            components: None,
        }
    }

    /// A swap's report of `instance`.
    fn report_of(instance: &PluginInstance) -> SwapReport {
        SwapReport {
            stage: "big".into(),
            version: instance.plugin().hash.clone(),
            pause_us: 1,
            checkpoint: None,
            records_in: 0,
            config: Some(instance.plugin().config.clone()),
        }
    }

    /// A task that runs `config` for stage `big` and answers swaps itself: refusing them
    /// when `refuse`; each request's `why` goes to `seen`.
    fn fake_task(
        board: &TaskBoard,
        name: &'static str,
        config: &PluginConfig,
        refuse: bool,
        seen: Sender<(&'static str, String)>,
    ) {
        let (control, requests) = channel();
        board.attach(
            name,
            Attached {
                control,
                ..fake_attached(config)
            },
        );
        std::thread::spawn(move || {
            for request in requests {
                if let Control::Swap {
                    instance,
                    why,
                    reply,
                    ..
                } = request
                {
                    let _ = seen.send((name, why));
                    let _ = reply.send(if refuse {
                        Err("the checkpoint before the swap failed".into())
                    } else {
                        Ok(report_of(&instance))
                    });
                }
            }
        });
    }

    /// What the endpoint of a job of `board`'s tasks shares between requests.
    fn shared_of(board: &Arc<TaskBoard>) -> Shared {
        Shared {
            served: Served::Tasks(board.clone()),
            token: None,
            reloader: Arc::new(Reloader::new(Arc::new(
                PluginRuntime::new(CompiledCache::from_env()).unwrap(),
            ))),
        }
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(future)
    }

    fn reload_to_50(board: &Arc<TaskBoard>) -> Answer {
        let shared = shared_of(board);
        let request = ReloadRequest {
            stage: "big".into(),
            path: None,
            config: [("value".to_owned(), "50".to_owned())].into(),
            rollback: false,
            shadow: false,
            promote: false,
            unshadow: false,
        };
        block_on(reload(&shared, request, "reload"))
    }

    #[test]
    fn a_job_of_tasks_running_none_yet_refuses_a_savepoint_and_goes_on() {
        let (board, _) = board_of(&[]);
        let stop = StopRequest {
            savepoint: Some("/tmp/never".into()),
        };
        let (code, Json(answer)) = block_on(stop_handler(
            State(shared_of(&board)),
            HeaderMap::new(),
            Some(Json(stop)),
        ));
        assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(answer["error"]
            .as_str()
            .unwrap()
            .contains("runs no task yet"));
        assert!(!board.stopping(), "nothing was saved, so the job goes on");
        let request = SavepointRequest {
            dir: "/tmp/never".into(),
        };
        let (code, _) = block_on(savepoint_handler(
            State(shared_of(&board)),
            HeaderMap::new(),
            Json(request),
        ));
        assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
    }

    /// A board of fake tasks (name, whether it refuses swaps) running the `job()`'s
    /// filter; the swaps' `why`s come out of the receiver.
    fn board_of(
        tasks: &[(&'static str, bool)],
    ) -> (Arc<TaskBoard>, Receiver<(&'static str, String)>) {
        let config = job();
        let board = TaskBoard::new(&config, Arc::new(AtomicBool::new(false)));
        let (seen, heard) = channel();
        for &(name, refuse) in tasks {
            fake_task(&board, name, &config.plugins[0], refuse, seen.clone());
        }
        (board, heard)
    }

    #[test]
    fn when_one_task_refuses_a_swap_the_tasks_that_took_it_go_back() {
        let (board, heard) = board_of(&[("a", false), ("b", true)]);
        let (code, Json(answer)) = reload_to_50(&board);
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
        let error = answer["error"].as_str().unwrap();
        assert!(
            error.contains("task b: the checkpoint before the swap failed"),
            "{error}"
        );
        assert!(
            error.contains("the 1 tasks that had taken it went back"),
            "{error}"
        );
        let mut requests: Vec<_> = heard.try_iter().collect();
        requests.sort();
        assert_eq!(
            requests,
            vec![
                ("a", "reload".into()),
                ("a", "rollback (task b refused the new version)".into()),
                ("b", "reload".into()),
            ]
        );
        // Nothing recorded: a task started later runs the version of the pipeline file.
        let mut later = job();
        board.apply_swaps(&mut later);
        assert_eq!(later.plugins[0].config["value"].as_str(), Some("20"));
    }

    #[test]
    fn a_swap_every_task_took_is_what_tasks_started_later_run() {
        let (board, heard) = board_of(&[("a", false), ("b", false)]);
        let (code, Json(answer)) = reload_to_50(&board);
        assert_eq!(code, StatusCode::OK, "{answer}");
        assert_eq!(answer["tasks"].as_array().unwrap().len(), 2, "{answer}");
        assert_eq!(heard.try_iter().count(), 2);
        let mut later = job();
        board.apply_swaps(&mut later);
        assert_eq!(later.plugins[0].config["value"].as_str(), Some("50"));
    }

    #[test]
    fn a_task_started_during_a_swap_is_swapped_too() {
        let config = job();
        let board = TaskBoard::new(&config, Arc::new(AtomicBool::new(false)));
        let (seen, heard) = channel();
        // Task `a` answers once task `c` has joined (a partition assigned meanwhile).
        let (control, requests) = channel();
        board.attach(
            "a",
            Attached {
                control,
                ..fake_attached(&config.plugins[0])
            },
        );
        let (joining, late_seen) = (board.clone(), seen.clone());
        let late_config = config.plugins[0].clone();
        std::thread::spawn(move || {
            for request in requests {
                if let Control::Swap {
                    instance, reply, ..
                } = request
                {
                    fake_task(&joining, "c", &late_config, false, late_seen.clone());
                    let _ = reply.send(Ok(report_of(&instance)));
                }
            }
        });
        let (code, Json(answer)) = reload_to_50(&board);
        assert_eq!(code, StatusCode::OK, "{answer}");
        let tasks: Vec<&str> = answer["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["task"].as_str().unwrap())
            .collect();
        assert_eq!(tasks, ["a", "c"]);
        assert_eq!(
            heard.try_iter().collect::<Vec<_>>(),
            vec![("c", "reload (the task started during the swap)".to_owned())]
        );
        drop(seen);
    }

    #[test]
    fn task_metrics_are_labelled_by_task_with_each_family_once() {
        let text = |n: u64| {
            format!(
                "# HELP eddy_records_in Records.\n# TYPE eddy_records_in counter\neddy_records_in_total {n}\n\
                 # HELP eddy_stage_events_in Events.\n# TYPE eddy_stage_events_in counter\n\
                 eddy_stage_events_in_total{{stage=\"big\"}} {n}\n# EOF\n"
            )
        };
        let merged = labelled_by_task([("t-0".to_owned(), text(1)), ("t-1".to_owned(), text(2))]);
        assert_eq!(
            merged,
            "# HELP eddy_records_in Records.\n# TYPE eddy_records_in counter\n\
             eddy_records_in_total{task=\"t-0\"} 1\neddy_records_in_total{task=\"t-1\"} 2\n\
             # HELP eddy_stage_events_in Events.\n# TYPE eddy_stage_events_in counter\n\
             eddy_stage_events_in_total{task=\"t-0\",stage=\"big\"} 1\n\
             eddy_stage_events_in_total{task=\"t-1\",stage=\"big\"} 2\n# EOF\n"
        );
    }
}
