//! The window operator's checkpoint section (`window`): its definition, watermark and
//! counters as the section's small state, and one table entry per open (key, window)
//! holding its accumulator, so incremental checkpoints carry only the windows that
//! changed.
//!
//! Invariant: state restores only into an operator of the same definition (`spec`); the
//! error says which definition the state was for. Format 2 also records the aggregate
//! plugin's version and config (format 1, without them, still reads).

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::aggregate::{Acc, AggregatorVersion};
use super::operator::WindowOperator;
use crate::checkpoint::{parse_window_key, window_key, Checkpointed, Section};

/// The name of the window operator's checkpoint section.
pub const SECTION: &str = "window";
/// The format version of that section.
const SECTION_VERSION: u32 = 2;

/// Window state: every open (key, window) with its accumulator.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowSnapshot {
    /// The window's definition; state only restores into the same definition.
    pub spec: String,
    /// The aggregate plugin's version and config, for a plugin aggregate.
    pub aggregate: Option<AggregatorVersion>,
    /// The operator's watermark.
    pub watermark: i64,
    /// (key, start, end, accumulator) of every open window — in an incremental
    /// snapshot, of the windows created or updated since the last one.
    pub windows: Vec<(Vec<u8>, i64, i64, Acc)>,
    /// In an incremental snapshot, the windows closed since the last one.
    pub removed: Vec<(Vec<u8>, i64, i64)>,
    /// The operator's counters.
    pub counters: [u64; 4],
}

/// The section's small state.
#[derive(Debug, Serialize, Deserialize)]
struct WindowMeta {
    spec: String,
    watermark: i64,
    counters: [u64; 4],
    aggregate: Option<AggregatorVersion>,
}

/// The section's small state in format 1.
#[derive(Debug, Serialize, Deserialize)]
struct WindowMetaV1 {
    spec: String,
    watermark: i64,
    counters: [u64; 4],
}

fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

impl WindowSnapshot {
    /// The snapshot as a checkpoint section.
    pub fn into_section(self) -> Result<Section> {
        let meta = WindowMeta {
            spec: self.spec,
            watermark: self.watermark,
            counters: self.counters,
            aggregate: self.aggregate,
        };
        let mut section = Section::new(SECTION, SECTION_VERSION).with_meta(&meta)?;
        section.entries = self
            .windows
            .iter()
            .map(|(key, start, end, acc)| {
                Ok((
                    window_key(key, *start, *end),
                    bincode::serde::encode_to_vec(acc, bincode_config())?,
                ))
            })
            .collect::<Result<_>>()?;
        section.removed = self
            .removed
            .iter()
            .map(|(key, start, end)| window_key(key, *start, *end))
            .collect();
        Ok(section)
    }

    /// Reads a `window` section (a full one: after folding its chain).
    pub fn from_section(section: &Section) -> Result<Self> {
        let meta: WindowMeta = if section.version == 1 {
            let v1: WindowMetaV1 = section.meta(1)?;
            WindowMeta {
                spec: v1.spec,
                watermark: v1.watermark,
                counters: v1.counters,
                aggregate: None,
            }
        } else {
            section.meta(SECTION_VERSION)?
        };
        let corrupt = || format!("checkpoint section `{}` is corrupt", section.name);
        let windows = section
            .entries
            .iter()
            .map(|(k, v)| {
                let (key, start, end) = parse_window_key(k).with_context(corrupt)?;
                let (acc, _) =
                    bincode::serde::decode_from_slice(v, bincode_config()).with_context(corrupt)?;
                Ok((key, start, end, acc))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            spec: meta.spec,
            aggregate: meta.aggregate,
            watermark: meta.watermark,
            windows,
            removed: Vec::new(),
            counters: meta.counters,
        })
    }
}

impl Checkpointed for WindowOperator {
    fn snapshot(&mut self, _id: u64, incremental: bool) -> Result<Option<Section>> {
        self.state(incremental).into_section().map(Some)
    }

    fn state_entries(&self) -> usize {
        self.open_windows()
    }
}

impl WindowOperator {
    /// Restores the operator from its checkpoint section; the section must be for the
    /// same window definition. Returns the aggregate plugin version it recorded.
    pub fn restore(&mut self, section: &Section) -> Result<Option<AggregatorVersion>> {
        let snapshot = WindowSnapshot::from_section(section)?;
        if snapshot.spec != self.spec() && !snapshot.windows.is_empty() {
            bail!(
                "incompatible state: its window state is for [window] {}, the pipeline's [window] is {}",
                snapshot.spec,
                self.spec()
            );
        }
        self.restore_state(&snapshot);
        Ok(snapshot.aggregate)
    }
}
