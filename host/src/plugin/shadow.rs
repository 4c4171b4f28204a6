//! Shadow mode: a candidate version runs beside the live one on the same batches, its
//! output compared event by event and never emitted; `eddy status` shows the counts and
//! samples of differences, and the operator promotes or drops the candidate.
//!
//! Invariant: nothing the candidate does reaches the job: its output and rejections are
//! discarded, its keyed state is its own copy (taken when it started), and a failure only
//! counts and restarts the candidate.

use std::collections::BTreeMap;

use serde::Serialize;

use super::instance::PluginInstance;
use super::stage::invoke;
use crate::batch::{EventBatch, Origin};
use crate::dead_letter::DeadLetters;

/// How many differences shadow mode keeps as samples.
const SAMPLES: usize = 10;

/// A candidate version in shadow mode, and what comparing it has found.
pub(super) struct Shadow {
    instance: PluginInstance,
    compared: u64,
    differing: u64,
    failed: u64,
    samples: Vec<ShadowDiff>,
    scratch: Vec<Origin>,
}

/// What shadow mode has seen, for `eddy status`.
#[derive(Debug, Clone, Serialize)]
pub struct ShadowStatus {
    /// The candidate's SHA-256.
    pub version: String,
    /// Input events both versions processed.
    pub compared: u64,
    /// Input events whose outputs differ.
    pub differing: u64,
    /// Batches the candidate failed on (the live version went on).
    pub failed: u64,
    /// The first differences.
    pub samples: Vec<ShadowDiff>,
}

/// One input event whose outputs differ.
#[derive(Debug, Clone, Serialize)]
pub struct ShadowDiff {
    /// The event's source partition and position.
    pub partition: u32,
    /// Its position there.
    pub position: u64,
    /// What the live version emitted for it.
    pub live: Vec<String>,
    /// What the candidate emitted for it.
    pub candidate: Vec<String>,
}

impl Shadow {
    pub(super) fn new(instance: PluginInstance) -> Self {
        Self {
            instance,
            compared: 0,
            differing: 0,
            failed: 0,
            samples: Vec::new(),
            scratch: Vec::new(),
        }
    }

    pub(super) fn into_instance(self) -> PluginInstance {
        self.instance
    }

    pub(super) fn status(&self) -> ShadowStatus {
        ShadowStatus {
            version: self.instance.plugin().hash.clone(),
            compared: self.compared,
            differing: self.differing,
            failed: self.failed,
            samples: self.samples.clone(),
        }
    }

    /// Runs the candidate on `input` (what the live version was given) and compares what
    /// it emits per input event with `live` (what the live version emitted).
    pub(super) fn compare(&mut self, mut input: EventBatch, live: &EventBatch) {
        let events: Vec<Origin> = input.origins.clone();
        let mut discarded = DeadLetters::default();
        if invoke(
            &mut self.instance,
            &mut input,
            &mut discarded,
            &mut self.scratch,
        )
        .is_err()
        {
            self.failed += 1;
            if let Err(e) = self.instance.restart() {
                tracing::warn!("shadow version cannot be restarted: {e:#}");
            }
            return;
        }
        let (live_out, candidate_out) = (by_input(live), by_input(&input));
        for origin in &events {
            let key = (origin.partition, origin.position);
            let (a, b) = (live_out.get(&key), candidate_out.get(&key));
            self.compared += 1;
            if a != b {
                self.differing += 1;
                if self.samples.len() < SAMPLES {
                    let text = |o: Option<&Vec<&[u8]>>| -> Vec<String> {
                        o.into_iter()
                            .flatten()
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                            .collect()
                    };
                    self.samples.push(ShadowDiff {
                        partition: origin.partition,
                        position: origin.position,
                        live: text(a),
                        candidate: text(b),
                    });
                }
            }
        }
    }
}

/// The values a batch holds, grouped by the input event they came from.
fn by_input(batch: &EventBatch) -> BTreeMap<(u32, u64), Vec<&[u8]>> {
    let mut out: BTreeMap<(u32, u64), Vec<&[u8]>> = BTreeMap::new();
    for (i, origin) in batch.origins.iter().enumerate() {
        out.entry((origin.partition, origin.position))
            .or_default()
            .push(batch.value(i));
    }
    out
}
