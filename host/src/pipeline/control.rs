//! How the outside (the admin endpoint) talks to a running pipeline: control requests,
//! answered at the next batch boundary, and a status board the pipeline refreshes after
//! every batch.

use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::Metrics;
pub use crate::checkpoint::CheckpointStatus;
use crate::plugin::{PluginInstance, ShadowStatus, VersionRecord};
use crate::source::SourcePosition;

/// A request to the running pipeline.
#[derive(Debug)]
pub enum Control {
    /// Take a savepoint into `dir`; the reply names the savepoint file.
    Savepoint {
        /// The savepoint directory.
        dir: PathBuf,
        /// Where the answer goes.
        reply: Sender<Result<PathBuf, String>>,
    },
    /// Switch stage `stage` to `instance` (a new version, started off the stream) at the
    /// next batch boundary.
    Swap {
        /// The stage's name.
        stage: String,
        /// The new version, initialised.
        instance: Box<PluginInstance>,
        /// Why (`reload`, …), for the stage's history.
        why: String,
        /// Where the answer goes.
        reply: Sender<Result<SwapReport, String>>,
    },
    /// Shadow mode for stage `stage`: start a candidate beside the live version, promote
    /// it (a swap), or drop it.
    Shadow {
        /// The stage's name.
        stage: String,
        /// What to do.
        action: ShadowAction,
        /// Where the answer goes.
        reply: Sender<Result<SwapReport, String>>,
    },
    /// Stop after the current batch, with a final savepoint when `savepoint` is given.
    Stop {
        /// The savepoint directory, if any.
        savepoint: Option<PathBuf>,
        /// Where the answer goes (the savepoint file, if one was taken).
        reply: Sender<Result<Option<PathBuf>, String>>,
    },
}

/// What to do with a stage's shadow.
#[derive(Debug)]
pub enum ShadowAction {
    /// Run this candidate beside the live version.
    Start(Box<PluginInstance>),
    /// Swap the candidate in (with the usual checkpoint and probation).
    Promote,
    /// Drop the candidate.
    Drop,
}

/// What a swap did.
#[derive(Debug, Clone, Serialize)]
pub struct SwapReport {
    /// The stage.
    pub stage: String,
    /// The version now running (SHA-256 of the component).
    pub version: String,
    /// How long the stream paused, in microseconds.
    pub pause_us: u64,
    /// The checkpoint taken at the swap, when the job checkpoints.
    pub checkpoint: Option<u64>,
    /// Records read before the swap: every record after them is processed by the new
    /// version, every one before by the old.
    pub records_in: u64,
    /// The stage's configuration now running, when the change was a swap.
    #[serde(skip)]
    pub config: Option<crate::config::PluginConfig>,
}

/// The job's state as `eddy status` shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    /// `starting`, `running`, `finished` or `stopped`.
    pub state: String,
    /// The source and its position.
    pub source: SourceStatus,
    /// Each source partition's event time.
    pub partitions: Vec<PartitionStatus>,
    /// The job's watermark (absent before the first event).
    pub watermark: Option<i64>,
    /// Records in, out, rejected, late, …
    pub metrics: Metrics,
    /// Open (key, window) pairs.
    pub open_windows: u64,
    /// The newest completed checkpoint.
    pub last_checkpoint: Option<CheckpointStatus>,
    /// Each plugin stage.
    pub plugins: Vec<PluginStatus>,
    /// Side-input tables and their versions.
    pub side_inputs: Vec<(String, u64)>,
}

/// The source in a status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceStatus {
    /// Its name, e.g. `file:in.jsonl`.
    pub name: String,
    /// Where it is.
    pub position: SourcePosition,
}

/// One source partition in a status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PartitionStatus {
    /// The partition number.
    pub partition: u32,
    /// Position of its latest event (line number, generator `seq`).
    pub position: Option<u64>,
    /// Highest event time seen.
    pub max_event_time: Option<i64>,
    /// The partition's watermark.
    pub watermark: Option<i64>,
    /// Whether it is idle.
    pub idle: bool,
}

/// A plugin stage in a status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PluginStatus {
    /// The stage's name.
    pub name: String,
    /// The component's SHA-256: its version.
    pub version: String,
    /// Events in.
    pub events_in: u64,
    /// Events out.
    pub events_out: u64,
    /// Events rejected.
    pub rejected: u64,
    /// Events dead-lettered by failed batches.
    pub failed: u64,
    /// The versions the stage has run, oldest first; the last is running.
    pub history: Vec<VersionRecord>,
    /// A candidate in shadow mode, and what comparing it found.
    pub shadow: Option<ShadowStatus>,
}

/// The status, shared between the pipeline (writer) and the admin endpoint (reader).
pub type StatusBoard = Arc<Mutex<Status>>;
