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
//!
//! It binds to loopback by default; anyone who can reach it can stop the job.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::mpsc::{channel, Sender};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::metrics::MetricsRegistry;
use crate::pipeline::{Control, StatusBoard};

/// How long a client waits for the job to answer (a savepoint of a large state takes time).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Clone)]
struct Shared {
    status: StatusBoard,
    control: Sender<Control>,
    metrics: MetricsRegistry,
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

/// The admin routes over a pipeline's status board, metrics and control channel.
pub fn router(status: StatusBoard, metrics: MetricsRegistry, control: Sender<Control>) -> Router {
    Router::new()
        .route("/status", get(status_handler))
        .route("/metrics", get(metrics_handler))
        .route("/savepoint", post(savepoint_handler))
        .route("/stop", post(stop_handler))
        .with_state(Shared {
            status,
            control,
            metrics,
        })
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
    Json(request): Json<SavepointRequest>,
) -> Answer {
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

async fn stop_handler(State(shared): State<Shared>, request: Option<Json<StopRequest>>) -> Answer {
    let savepoint = request.map(|Json(r)| r).unwrap_or_default().savepoint;
    match ask(&shared, |reply| Control::Stop { savepoint, reply }).await {
        Ok(path) => (
            StatusCode::OK,
            Json(json!({ "stopped": true, "savepoint": path })),
        ),
        Err(e) => failure(e),
    }
}

/// Sends one request to a job's admin endpoint and returns the JSON answer; an error
/// answer becomes an error with the job's message.
pub fn request(addr: &str, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
    let mut stream = TcpStream::connect(addr).with_context(|| {
        format!("cannot reach a running job's admin endpoint at {addr}; is `eddy run` running, and is this its [admin] listen address?")
    })?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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
