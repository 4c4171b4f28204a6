//! The mock host of `eddy plugin test`: one plugin stage run through the real runtime
//! (the same loading, type-checking, timeouts, keyed state, side inputs, failure handling,
//! checkpoint sections and hot swap as in a pipeline), fed from JSON lines instead of a
//! source, with its outputs collected instead of sent to a sink.
//!
//! Invariants: every input line ends up exactly once in a [`StepOutput`]: emitted (as the
//! plugin's output, maybe several or none per line), rejected by the plugin or by the host
//! (a line that is not a JSON object, or lacks the time or key field), or failed (the
//! plugin trapped on it). Nothing is written anywhere but the returned values.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

use crate::batch::{EventBatch, Origin};
use crate::checkpoint::Checkpointed;
use crate::config::{EventFields, PluginConfig, SideInputConfig};
use crate::dead_letter::{DeadLetters, DeadValue};
use crate::plugin::{PluginInstance, PluginRuntime, PluginStage, SideInputs, StateEntry};
use crate::source::fields::extract;

/// How a test feeds the plugin.
#[derive(Debug, Clone)]
pub struct HarnessOptions {
    /// The component.
    pub plugin: PathBuf,
    /// The config passed to `init`.
    pub config: Vec<(String, String)>,
    /// Side-input tables for `lookup`.
    pub tables: Vec<SideInputConfig>,
    /// Where each line's event time and key come from.
    pub fields: EventFields,
    /// Events per plugin call.
    pub batch: usize,
}

/// What one run over some input lines gave.
#[derive(Debug, Default)]
pub struct StepOutput {
    /// The values the plugin emitted (kept, for a filter), in order.
    pub emitted: Vec<Vec<u8>>,
    /// Dead letters: events the plugin rejected or failed on, and lines that were not
    /// events, in input order.
    pub dead: Vec<DeadLetter>,
    /// How many events the plugin failed on (trapped, timed out, …).
    pub failed: u64,
}

/// One dead letter of a test run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The input line.
    pub line: u64,
    /// Why: the plugin's reason, or the failure.
    pub reason: String,
    /// The event's JSON text (or the raw line, as a JSON string), as the dead-letter sink
    /// writes it.
    pub value: String,
}

/// A plugin stage under test.
pub struct Harness<'r> {
    runtime: &'r PluginRuntime,
    stage: PluginStage,
    side_inputs: SideInputs,
    fields: EventFields,
    batch: usize,
}

impl<'r> Harness<'r> {
    /// Loads the plugin and calls its `init`.
    pub fn start(runtime: &'r PluginRuntime, options: HarnessOptions) -> Result<Self> {
        let side_inputs = SideInputs::load(&options.tables, false)?;
        let config = plugin_config(&options.plugin, &options.config)?;
        let loaded = runtime.load(&config)?;
        let stage = PluginStage::start(runtime, loaded, side_inputs.clone())?;
        Ok(Self {
            runtime,
            stage,
            side_inputs,
            fields: options.fields,
            batch: options.batch.max(1),
        })
    }

    /// The plugin's content hash.
    pub fn version(&self) -> &str {
        self.stage.hash()
    }

    /// Runs the plugin over `input` (JSON lines), `batch` events per call. An event's
    /// position (in dead letters) is its line number.
    pub fn run(&mut self, input: &[u8]) -> Result<StepOutput> {
        let mut out = StepOutput::default();
        let mut batch = EventBatch::default();
        let mut dead = DeadLetters::new("test input");
        let failed_before = self.stage.counters().failed;
        for (number, line) in input.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let origin = Origin {
                partition: 0,
                position: number as u64 + 1,
                watermark: i64::MIN,
            };
            match extract(line, &self.fields) {
                Ok(fields) => {
                    let key = fields.key.as_deref().unwrap_or_default();
                    batch.push(origin, key, fields.timestamp.unwrap_or(0), line);
                }
                Err(reason) => dead.push(&reason, origin, None, DeadValue::Raw(line)),
            }
            if batch.len() >= self.batch {
                self.call(&mut batch, &mut dead, &mut out)?;
            }
        }
        self.call(&mut batch, &mut dead, &mut out)?;
        out.dead.sort_by_key(|d| d.line);
        out.failed = self.stage.counters().failed - failed_before;
        Ok(out)
    }

    fn call(
        &mut self,
        batch: &mut EventBatch,
        dead: &mut DeadLetters,
        out: &mut StepOutput,
    ) -> Result<()> {
        self.stage.run(batch, dead)?;
        out.emitted
            .extend((0..batch.len()).map(|i| batch.value(i).to_vec()));
        // Read with the SDK's raw field scanner: an event may hold text serde_json refuses
        // (a lone surrogate escape) and must still be shown as it was.
        for record in dead.records().iter() {
            let field = |name| eddy_plugin_sdk::json::field(record, name);
            out.dead.push(DeadLetter {
                line: field("position").and_then(|f| f.as_i64()).unwrap_or(0) as u64,
                reason: field("reason")
                    .and_then(|f| f.as_str())
                    .unwrap_or_default()
                    .into_owned(),
                value: String::from_utf8_lossy(field("value").map_or(&b""[..], |f| f.raw()))
                    .into_owned(),
            });
        }
        batch.clear();
        dead.clear();
        Ok(())
    }

    /// Takes the stage's checkpoint section (keyed state, the plugin's own state) and
    /// restores it into a new instance of the same version, as a job resuming from a
    /// savepoint would.
    pub fn savepoint_and_restore(&mut self) -> Result<()> {
        let section = self
            .stage
            .snapshot(0, false)?
            .context("the stage wrote no checkpoint section")?;
        let loaded = self.runtime.load(&self.running_config())?;
        let mut fresh = PluginStage::start(self.runtime, loaded, self.side_inputs.clone())?;
        fresh.restore(&section, self.runtime, None)?;
        self.stage = fresh;
        Ok(())
    }

    /// Hot-swaps to the component at `plugin` with `config` on top of the running
    /// config, as `eddy reload` does: state carries over (and migrates).
    pub fn swap(&mut self, plugin: &Path, config: &[(String, String)]) -> Result<()> {
        let mut next = self.running_config();
        next.path = plugin.to_owned();
        for (key, value) in config {
            next.config
                .insert(key.clone(), toml::Value::String(value.clone()));
        }
        let next = PluginInstance::prepare(self.runtime, &next, self.side_inputs.clone())?;
        self.stage
            .swap_in(next, "test swap", std::time::Instant::now(), None)
            .map_err(|e| anyhow::anyhow!("the swap to {} was refused: {e}", plugin.display()))
    }

    /// The config of the version running now.
    fn running_config(&self) -> PluginConfig {
        let running = self.stage.history().last();
        running.expect("a stage has run a version").config.clone()
    }

    /// Seeds keyed state from JSON: `{"<key>": {"<state name>": "<value>"}}` (a value is
    /// a string of UTF-8 text, or an array of byte values).
    pub fn seed_state(&mut self, state: &Value) -> Result<()> {
        let keys = state.as_object().context(
            "the state file must hold one JSON object: {\"<key>\": {\"<name>\": \"<value>\"}}",
        )?;
        let mut entries = Vec::new();
        for (key, names) in keys {
            let names = names
                .as_object()
                .with_context(|| format!("state of key {key:?} must be an object of names"))?;
            for (name, value) in names {
                let bytes = match value {
                    Value::String(text) => text.clone().into_bytes(),
                    Value::Array(items) => items
                        .iter()
                        .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                        .collect::<Option<Vec<u8>>>()
                        .with_context(|| {
                            format!("state {key:?}/{name:?}: an array must hold bytes (0-255)")
                        })?,
                    _ => bail!("state {key:?}/{name:?}: a value is a string or an array of bytes"),
                };
                entries.push((key.clone().into_bytes(), name.clone(), bytes));
            }
        }
        self.stage.seed_keyed_state(&entries);
        Ok(())
    }

    /// The keyed state now, in the format [`Harness::seed_state`] reads.
    pub fn state(&self) -> Value {
        state_json(&self.stage.keyed_state())
    }
}

/// Keyed-state entries as JSON: text where the bytes are UTF-8, byte arrays elsewhere.
fn state_json(entries: &[StateEntry]) -> Value {
    let mut keys = Map::new();
    for (key, name, value) in entries {
        let key = String::from_utf8_lossy(key).into_owned();
        let value = match std::str::from_utf8(value) {
            Ok(text) => json!(text),
            Err(_) => json!(value),
        };
        keys.entry(key)
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("inserted as an object")
            .insert(name.clone(), value);
    }
    Value::Object(keys)
}

/// A stage's config as a pipeline file would give it (every other key at its default).
/// The stage is named after the component's file.
fn plugin_config(plugin: &Path, config: &[(String, String)]) -> Result<PluginConfig> {
    let mut table = toml::Table::new();
    let name = plugin.file_stem().map(|s| s.to_string_lossy().into_owned());
    table.insert(
        "name".into(),
        name.unwrap_or_else(|| "plugin".into()).into(),
    );
    table.insert("path".into(), plugin.display().to_string().into());
    let pairs: toml::Table = config
        .iter()
        .map(|(k, v)| (k.clone(), toml::Value::String(v.clone())))
        .collect();
    table.insert("config".into(), pairs.into());
    Ok(toml::Value::Table(table).try_into()?)
}
