//! Checkpoints and savepoints: consistent cuts of a running job, written atomically.
//!
//! A [`Snapshot`] holds everything a job needs to continue exactly where it was: each
//! source partition's position, the watermarks, the window state, every plugin's keyed
//! state, side-input versions, each plugin's identity, and how far each transactional
//! sink has committed. It is taken at a batch boundary.
//!
//! On disk a checkpoint is one file: the magic `EDDYCKPT`, a format version, the payload's
//! length and CRC-32, then the payload (bincode). It is written to a temporary file,
//! fsynced, renamed into place and the directory fsynced, so a crash leaves either the
//! whole file or none; a truncated or corrupt file is detected by its length and checksum.

mod store;
mod writer;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

pub use store::{
    read_snapshot, write_atomic, CheckpointDir, CheckpointFile, Recovery, MAX_CHAIN, SAVEPOINT_FILE,
};
pub use writer::CheckpointWriter;

use crate::pipeline::Metrics;
use crate::window::Acc;

/// The on-disk format version; a reader refuses files of another version.
pub const FORMAT_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"EDDYCKPT";
const HEADER: usize = 8 + 4 + 8 + 4;

/// A consistent cut of a job.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    /// Checkpoint number, increasing through the job's life.
    pub id: u64,
    /// When it was taken, ms since the Unix epoch.
    pub created_ms: i64,
    /// Whether it is a savepoint (taken on demand) rather than a periodic checkpoint.
    pub savepoint: bool,
    /// `None` for a full checkpoint; for an incremental one, the checkpoint it builds on:
    /// its window and keyed state hold only what changed since that one.
    pub base: Option<u64>,
    /// The source and its position.
    pub source: SourceSnapshot,
    /// Watermark state.
    pub watermarks: WatermarkSnapshot,
    /// Each plugin stage's identity and keyed state, in pipeline order.
    pub plugins: Vec<PluginSnapshot>,
    /// Window state, when the pipeline has a window.
    pub window: Option<WindowSnapshot>,
    /// Side-input tables and their versions.
    pub side_inputs: Vec<(String, u64)>,
    /// How far each transactional sink has committed.
    pub sinks: Vec<SinkSnapshot>,
    /// The job's counters at the cut.
    pub metrics: Metrics,
}

/// A source and where it is.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceSnapshot {
    /// The source as `Source::describe` names it, e.g. `file:in.jsonl`.
    pub name: String,
    /// Its number of partitions.
    pub partitions: u32,
    /// Its position.
    pub position: SourcePosition,
}

/// Where a source is, per kind.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SourcePosition {
    /// A file: the byte offset of the next line and its 1-based number minus one.
    File {
        /// Bytes consumed.
        offset: u64,
        /// Lines consumed.
        line: u64,
    },
    /// The generator: the next `seq` to emit.
    Generator {
        /// The next sequence number.
        next_seq: u64,
    },
    /// A source that cannot be replayed (stdin).
    #[default]
    Unreplayable,
}

/// Watermark state: each partition's highest event time and the job's watermark.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WatermarkSnapshot {
    /// Highest event time per partition (`None` before its first event).
    pub partitions: Vec<Option<i64>>,
    /// The job's watermark.
    pub current: i64,
}

/// A plugin stage's identity and keyed state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PluginSnapshot {
    /// The stage's name.
    pub name: String,
    /// The component's content hash (its version).
    pub hash: String,
    /// The stage's config.
    pub config: Vec<(String, String)>,
    /// Keyed state: (key, state name, value) — in an incremental checkpoint, only the
    /// entries written since its base.
    pub state: Vec<(Vec<u8>, String, Vec<u8>)>,
    /// In an incremental checkpoint, the entries deleted since its base.
    pub deleted: Vec<(Vec<u8>, String)>,
}

/// Window state: every open (key, window) with its accumulator.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WindowSnapshot {
    /// The window's definition; state only restores into the same definition.
    pub spec: String,
    /// The operator's watermark.
    pub watermark: i64,
    /// (key, start, end, accumulator) of every open window — in an incremental
    /// checkpoint, of the windows created or updated since its base.
    pub windows: Vec<(Vec<u8>, i64, i64, Acc)>,
    /// In an incremental checkpoint, the windows closed since its base.
    pub removed: Vec<(Vec<u8>, i64, i64)>,
    /// The operator's counters.
    pub counters: [u64; 4],
}

/// How far a transactional (file) sink has committed, and the staged epochs the
/// checkpoint covers: recovery makes the sink's file exactly `committed_len` bytes plus
/// those epochs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SinkSnapshot {
    /// Which sink: `sink`, `dead_letter` or `late`.
    pub role: String,
    /// The sink's file.
    pub path: std::path::PathBuf,
    /// Length of the file before the staged epochs.
    pub committed_len: u64,
    /// Staged epochs (checkpoint id, length) covered by this checkpoint, in order.
    pub epochs: Vec<(u64, u64)>,
}

/// Folds a chain of checkpoints — a full one, then incremental ones in order, each on
/// the one before — into the full snapshot of the last.
pub fn flatten(chain: Vec<Snapshot>) -> Result<Snapshot> {
    use std::collections::HashMap;
    let mut chain = chain.into_iter();
    let mut full = chain.next().context("an empty checkpoint chain")?;
    if full.base.is_some() {
        bail!(
            "checkpoint {} is incremental but its chain has no full checkpoint",
            full.id
        );
    }
    for delta in chain {
        if delta.base != Some(full.id) {
            bail!(
                "checkpoint {} does not build on checkpoint {}",
                delta.id,
                full.id
            );
        }
        let window = match (full.window.take(), delta.window.as_ref()) {
            (Some(mut base), Some(change)) => {
                let mut windows: HashMap<(Vec<u8>, i64, i64), Acc> = base
                    .windows
                    .drain(..)
                    .map(|(k, s, e, a)| ((k, s, e), a))
                    .collect();
                for removed in &change.removed {
                    windows.remove(removed);
                }
                for (k, s, e, a) in &change.windows {
                    windows.insert((k.clone(), *s, *e), a.clone());
                }
                Some(WindowSnapshot {
                    windows: windows
                        .into_iter()
                        .map(|((k, s, e), a)| (k, s, e, a))
                        .collect(),
                    removed: Vec::new(),
                    ..change.clone()
                })
            }
            (_, change) => change.cloned(),
        };
        let plugins = delta
            .plugins
            .iter()
            .map(|change| {
                let mut state: HashMap<(Vec<u8>, String), Vec<u8>> = full
                    .plugins
                    .iter()
                    .find(|p| p.name == change.name)
                    .map(|p| {
                        p.state
                            .iter()
                            .map(|(k, n, v)| ((k.clone(), n.clone()), v.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                for deleted in &change.deleted {
                    state.remove(deleted);
                }
                for (k, n, v) in &change.state {
                    state.insert((k.clone(), n.clone()), v.clone());
                }
                let mut state: Vec<_> = state.into_iter().map(|((k, n), v)| (k, n, v)).collect();
                state.sort();
                PluginSnapshot {
                    state,
                    deleted: Vec::new(),
                    ..change.clone()
                }
            })
            .collect();
        full = Snapshot {
            base: None,
            window,
            plugins,
            ..delta
        };
    }
    Ok(full)
}

/// Encodes a snapshot in the on-disk format.
pub fn encode(snapshot: &Snapshot) -> Result<Vec<u8>> {
    let payload = bincode::serde::encode_to_vec(snapshot, bincode::config::standard())?;
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Decodes a file in the on-disk format; says what is wrong with a bad one.
pub fn decode(bytes: &[u8]) -> Result<Snapshot> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        bail!("not an Eddy checkpoint (bad header)");
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into()?);
    if version != FORMAT_VERSION {
        bail!("checkpoint format version {version}; this Eddy reads version {FORMAT_VERSION}");
    }
    let len = u64::from_le_bytes(bytes[12..20].try_into()?) as usize;
    let crc = u32::from_le_bytes(bytes[20..24].try_into()?);
    let payload = &bytes[HEADER..];
    if payload.len() != len {
        bail!("truncated: {} of {len} payload bytes", payload.len());
    }
    if crc32fast::hash(payload) != crc {
        bail!("corrupt: the checksum does not match");
    }
    let (snapshot, _) = bincode::serde::decode_from_slice(payload, bincode::config::standard())?;
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        Snapshot {
            id: 7,
            source: SourceSnapshot {
                name: "generator(seed=1)".into(),
                partitions: 2,
                position: SourcePosition::Generator { next_seq: 42 },
            },
            watermarks: WatermarkSnapshot {
                partitions: vec![Some(10), None],
                current: i64::MIN,
            },
            plugins: vec![PluginSnapshot {
                name: "fraud".into(),
                hash: "ab".into(),
                config: vec![("threshold".into(), "5".into())],
                state: vec![(b"u1".to_vec(), "spend".into(), vec![1, 2, 3])],
                deleted: vec![(b"u2".to_vec(), "spend".into())],
            }],
            window: Some(WindowSnapshot {
                spec: "tumbling".into(),
                watermark: 5,
                windows: vec![
                    (b"k".to_vec(), 0, 10, Acc::Avg { sum: 1.5, count: 2 }),
                    (b"j".to_vec(), 0, 10, Acc::Bytes(vec![9])),
                ],
                removed: vec![(b"k".to_vec(), -10, 0)],
                counters: [1, 2, 3, 4],
            }),
            ..Snapshot::default()
        }
    }

    #[test]
    fn round_trips() {
        let snapshot = sample();
        assert_eq!(decode(&encode(&snapshot).unwrap()).unwrap(), snapshot);
    }

    #[test]
    fn detects_truncation_corruption_and_foreign_files() {
        let bytes = encode(&sample()).unwrap();
        let err = decode(&bytes[..bytes.len() - 3]).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        assert!(decode(&flipped)
            .unwrap_err()
            .to_string()
            .contains("checksum"));
        assert!(decode(b"hello")
            .unwrap_err()
            .to_string()
            .contains("not an Eddy checkpoint"));
        let mut future = bytes;
        future[8] = 9;
        assert!(decode(&future)
            .unwrap_err()
            .to_string()
            .contains("version 9"));
    }
}
