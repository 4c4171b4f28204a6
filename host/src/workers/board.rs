//! The tasks (or workers) a process runs, as its admin endpoint reaches them: each live
//! task's status board, metrics, control channel and plugin surroundings, the plugin
//! versions swapped in while the job runs, and the job's stop switch.
//!
//! Invariants: a task is on the board from the moment its pipeline is built until its
//! run ends; a stage's swapped-in version is recorded only once every task on the board
//! runs it, and a task started afterwards starts with it (a task resuming from a
//! checkpoint then runs what that checkpoint records).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::admin::Attached;
use crate::config::{PipelineConfig, PluginConfig};
use crate::pipeline::{Control, Pipeline};

/// The live tasks of a process run as workers.
pub struct TaskBoard {
    tasks: Mutex<BTreeMap<String, Attached>>,
    /// Stage name → the configuration swapped in, for tasks started later.
    swapped: Mutex<BTreeMap<String, PluginConfig>>,
    /// The plugins of the pipeline file, for watching their files.
    plugins: Vec<PluginConfig>,
    stop: Arc<AtomicBool>,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl TaskBoard {
    /// An empty board for the job `config` describes; `stop` ends the whole job.
    pub fn new(config: &PipelineConfig, stop: Arc<AtomicBool>) -> Arc<Self> {
        let window_plugin = config.window.iter().filter_map(|w| w.plugin.as_ref());
        Arc::new(Self {
            tasks: Mutex::default(),
            swapped: Mutex::default(),
            plugins: config
                .plugins
                .iter()
                .chain(window_plugin)
                .cloned()
                .collect(),
            stop,
        })
    }

    /// Puts task `name`, just built from `config`, on the board; returns the channel its
    /// run answers control requests from.
    pub fn join(
        &self,
        name: &str,
        config: &PipelineConfig,
        pipeline: &Pipeline,
    ) -> Receiver<Control> {
        let (attached, requests) = Attached::to(pipeline, config);
        self.attach(name, attached);
        requests
    }

    /// Puts task `name` on the board, reached through `attached`.
    pub fn attach(&self, name: &str, attached: Attached) {
        locked(&self.tasks).insert(name.to_owned(), attached);
    }

    /// Takes task `name` off the board (its run ended).
    pub fn leave(&self, name: &str) {
        locked(&self.tasks).remove(name);
    }

    /// The live tasks, by name.
    pub fn tasks(&self) -> Vec<(String, Attached)> {
        locked(&self.tasks)
            .iter()
            .map(|(name, task)| (name.clone(), task.clone()))
            .collect()
    }

    /// Records that every task now runs `config` for its stage.
    pub fn record_swap(&self, config: PluginConfig) {
        locked(&self.swapped).insert(config.name.clone(), config);
    }

    /// Gives a task's configuration the versions swapped in since the job started.
    pub fn apply_swaps(&self, config: &mut PipelineConfig) {
        let swapped = locked(&self.swapped);
        let window_plugin = config.window.as_mut().and_then(|w| w.plugin.as_mut());
        for plugin in config.plugins.iter_mut().chain(window_plugin) {
            if let Some(now) = swapped.get(&plugin.name) {
                *plugin = now.clone();
            }
        }
    }

    /// The plugins of the pipeline file.
    pub fn plugins(&self) -> &[PluginConfig] {
        &self.plugins
    }

    /// Ends the job: every task stops after a final checkpoint.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Whether the job is ending.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}
