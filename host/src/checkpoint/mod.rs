//! Checkpoints and savepoints: consistent cuts of a running job, written atomically.
//!
//! A [`Snapshot`] is a list of named, versioned [`Section`]s, one per component (the
//! source's positions, the watermarks, each plugin stage's keyed state, the window state,
//! each sink's staged output, side-input versions, the job's counters), taken at a batch
//! boundary. This module and the store know sections, never their contents: each
//! component writes and reads back its own.
//!
//! On disk a checkpoint is one file: the magic `EDDYCKPT`, a format version, the payload's
//! length and CRC-32, then the payload (bincode). It is written to a temporary file,
//! fsynced, renamed into place and the directory fsynced, so a crash leaves either the
//! whole file or none; a truncated or corrupt file is detected by its length and checksum.
//! A savepoint written by one version of Eddy restores on the next: a change of this
//! format needs a migration (see `tests/golden/`).

mod coordinator;
mod legacy;
mod section;
mod storage;
mod store;
mod writer;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

pub use coordinator::{CheckpointStatus, Coordinator};
pub use section::{
    parse_state_key, parse_window_key, state_key, window_key, Checkpointed, Section,
};
pub use storage::{CheckpointStore, HeldByAnother, LocalDir, StoreLock};
pub use store::{
    components_dir, read_snapshot, CheckpointDir, CheckpointFile, Recovery, MAX_CHAIN,
    SAVEPOINT_FILE,
};
pub use writer::CheckpointWriter;

/// The on-disk format version; a reader refuses files of another version.
pub const FORMAT_VERSION: u32 = 2;
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
    /// its sections' keyed tables hold only what changed since that one.
    pub base: Option<u64>,
    /// Each component's state.
    pub sections: Vec<Section>,
}

impl Snapshot {
    /// The section named `name`, if the snapshot has one.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// Files to fsync before the snapshot is written (output staged by sinks).
    pub fn sync_first(&self) -> impl Iterator<Item = &std::path::Path> {
        self.sections
            .iter()
            .flat_map(|s| s.sync_first.iter().map(|p| p.as_path()))
    }
}

/// Folds a chain of checkpoints — a full one, then incremental ones in order, each on
/// the one before — into the full snapshot of the last. A section absent from a later
/// checkpoint is gone (its component was removed from the pipeline).
pub fn flatten(chain: Vec<Snapshot>) -> Result<Snapshot> {
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
        let mut before = std::mem::take(&mut full.sections);
        let sections = delta
            .sections
            .iter()
            .map(
                |change| match before.iter().position(|s| s.name == change.name) {
                    Some(i) => {
                        let mut section = before.swap_remove(i);
                        section.fold(change);
                        section
                    }
                    None => {
                        let mut section = change.clone();
                        section.removed.clear();
                        section
                    }
                },
            )
            .collect();
        full = Snapshot {
            base: None,
            sections,
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
    if version != FORMAT_VERSION && version != legacy::FORMAT_VERSION {
        bail!(
            "checkpoint format version {version}; this Eddy reads versions {} and {FORMAT_VERSION}",
            legacy::FORMAT_VERSION
        );
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
    if version == legacy::FORMAT_VERSION {
        return legacy::upgrade(payload);
    }
    let (snapshot, _) = bincode::serde::decode_from_slice(payload, bincode::config::standard())?;
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        let mut window = Section::new("window", 1)
            .with_meta(&("tumbling", 5i64))
            .unwrap();
        window.entries = vec![(b"k".to_vec(), vec![1, 2]), (b"j".to_vec(), vec![9])];
        window.removed = vec![b"x".to_vec()];
        Snapshot {
            id: 7,
            sections: vec![Section::new("source", 1).with_meta(&42u64).unwrap(), window],
            ..Snapshot::default()
        }
    }

    #[test]
    fn round_trips() {
        let snapshot = sample();
        assert_eq!(decode(&encode(&snapshot).unwrap()).unwrap(), snapshot);
    }

    #[test]
    fn chains_fold_section_by_section() {
        let base = sample();
        let mut delta = Snapshot {
            id: 8,
            base: Some(7),
            sections: vec![Section::new("source", 1).with_meta(&50u64).unwrap()],
            ..Snapshot::default()
        };
        let mut window = Section::new("window", 1)
            .with_meta(&("tumbling", 9i64))
            .unwrap();
        window.removed = vec![b"j".to_vec()];
        window.entries = vec![(b"m".to_vec(), vec![3])];
        delta.sections.push(window);
        let full = flatten(vec![base, delta]).unwrap();
        assert_eq!((full.id, full.base), (8, None));
        assert_eq!(full.section("source").unwrap().meta::<u64>(1).unwrap(), 50);
        let window = full.section("window").unwrap();
        assert_eq!(
            window.entries,
            vec![(b"k".to_vec(), vec![1, 2]), (b"m".to_vec(), vec![3])]
        );
        assert!(flatten(vec![
            sample(),
            Snapshot {
                id: 9,
                base: Some(3),
                ..Snapshot::default()
            }
        ])
        .unwrap_err()
        .to_string()
        .contains("does not build on checkpoint 7"));
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
