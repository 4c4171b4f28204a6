//! A section of a checkpoint: one component's state, named and versioned by that
//! component. The checkpoint store knows sections, never what is inside them.
//!
//! A section has two parts:
//! - `meta`: the component's own encoding of its small state (positions, counters, a
//!   definition), replaced whole by every checkpoint;
//! - a keyed table (`entries`, `removed`): large keyed state (window accumulators, keyed
//!   plugin state). A full checkpoint holds every entry; an incremental one only the
//!   entries written since its base and the keys removed. Folding a chain of checkpoints
//!   ([`Section::fold`]) needs no knowledge of the component.
//!
//! Invariant: a component reads back only its own sections, and refuses a section whose
//! `version` is newer than it knows, naming the section and both versions.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// One component's state in a checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Section {
    /// Which component: `source`, `watermarks`, `plugin/<stage>`, `window`,
    /// `sink/<role>`, `side-inputs`, `metrics`.
    pub name: String,
    /// The format version of this section, owned by the component that writes it.
    pub version: u32,
    /// The component's small state, in its own encoding.
    pub meta: Vec<u8>,
    /// Keyed entries: all of them, or in an incremental checkpoint those written since its
    /// base.
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
    /// In an incremental checkpoint, the keys removed since its base.
    pub removed: Vec<Vec<u8>>,
    /// Files the checkpoint writer fsyncs (with their directories) before it writes the
    /// checkpoint, off the stream: output a sink staged for this checkpoint. Not stored.
    #[serde(skip)]
    pub sync_first: Vec<PathBuf>,
}

impl Section {
    /// An empty section `name` of format `version`.
    pub fn new(name: impl Into<String>, version: u32) -> Self {
        Self {
            name: name.into(),
            version,
            ..Self::default()
        }
    }

    /// Sets the section's small state, encoded with bincode.
    pub fn with_meta<T: Serialize>(mut self, meta: &T) -> Result<Self> {
        self.meta = bincode::serde::encode_to_vec(meta, bincode::config::standard())
            .with_context(|| format!("cannot encode checkpoint section `{}`", self.name))?;
        Ok(self)
    }

    /// Reads the section's small state, after checking its version is at most `known`.
    pub fn meta<T: DeserializeOwned>(&self, known: u32) -> Result<T> {
        self.check_version(known)?;
        let (meta, _) = bincode::serde::decode_from_slice(&self.meta, bincode::config::standard())
            .with_context(|| {
                format!(
                    "checkpoint section `{}` (version {}) cannot be read",
                    self.name, self.version
                )
            })?;
        Ok(meta)
    }

    /// Refuses a section written by a newer format than `known`.
    pub fn check_version(&self, known: u32) -> Result<()> {
        if self.version > known {
            bail!(
                "checkpoint section `{}` has format version {}, and this Eddy reads up to version {known}; \
                 resume it with the Eddy that wrote it, or a newer one",
                self.name,
                self.version
            );
        }
        Ok(())
    }

    /// Applies the section of the next checkpoint of a chain (incremental on this one):
    /// its `meta` and version replace this one's, its removed keys are dropped and its
    /// entries written.
    pub fn fold(&mut self, delta: &Section) {
        if !delta.removed.is_empty() || !delta.entries.is_empty() {
            let mut table: HashMap<Vec<u8>, Vec<u8>> = self.entries.drain(..).collect();
            for key in &delta.removed {
                table.remove(key);
            }
            for (k, v) in &delta.entries {
                table.insert(k.clone(), v.clone());
            }
            self.entries = table.into_iter().collect();
            self.entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        }
        self.version = delta.version;
        self.meta = delta.meta.clone();
        self.removed.clear();
    }

    /// Size of the section's content in bytes (for `eddy inspect`).
    pub fn size(&self) -> usize {
        self.meta.len()
            + self
                .entries
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }
}

/// The table key of a keyed-state entry (plugin sections): the key's length (4 bytes,
/// little-endian), the key, then the state name. The key layouts live here, beside the
/// section type, so that the store's migrations of older formats can write them.
pub fn state_key(key: &[u8], name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + key.len() + name.len());
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(name.as_bytes());
    out
}

/// Reads back what [`state_key`] wrote: (key, state name).
pub fn parse_state_key(bytes: &[u8]) -> Result<(Vec<u8>, String)> {
    let (len, rest) = bytes
        .split_first_chunk::<4>()
        .context("a keyed-state entry is shorter than its header")?;
    let len = u32::from_le_bytes(*len) as usize;
    if rest.len() < len {
        bail!("a keyed-state entry's key is cut short");
    }
    let (key, name) = rest.split_at(len);
    let name = String::from_utf8(name.to_vec())
        .map_err(|_| anyhow::anyhow!("a keyed-state entry's name is not UTF-8"))?;
    Ok((key.to_vec(), name))
}

/// The table key of a window (window sections): start and end (8 bytes each,
/// big-endian), then the key.
pub fn window_key(key: &[u8], start: i64, end: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + key.len());
    out.extend_from_slice(&start.to_be_bytes());
    out.extend_from_slice(&end.to_be_bytes());
    out.extend_from_slice(key);
    out
}

/// Reads back what [`window_key`] wrote: (key, start, end).
pub fn parse_window_key(bytes: &[u8]) -> Result<(Vec<u8>, i64, i64)> {
    let (start, rest) = bytes
        .split_first_chunk::<8>()
        .context("a window entry is shorter than its bounds")?;
    let (end, key) = rest
        .split_first_chunk::<8>()
        .context("a window entry is shorter than its bounds")?;
    Ok((
        key.to_vec(),
        i64::from_be_bytes(*start),
        i64::from_be_bytes(*end),
    ))
}

/// What takes part in checkpoints: every source, plugin stage, window operator, sink and
/// the job's counters. The checkpoint coordinator asks each for its section at a batch
/// boundary and calls each back once a checkpoint covering it is durable.
pub trait Checkpointed {
    /// This component's section of checkpoint `id` (with `incremental`, only what changed
    /// since its last section); `None` (the default) when it has no state to keep.
    fn snapshot(&mut self, _id: u64, _incremental: bool) -> Result<Option<Section>> {
        Ok(None)
    }

    /// Checkpoint `id` and every one before it are durable: output staged for them may
    /// be made visible, offsets committed.
    fn checkpoint_completed(&mut self, _id: u64) -> Result<()> {
        Ok(())
    }

    /// Entries of keyed state held (decides when checkpoints become incremental).
    fn state_entries(&self) -> usize {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_applies_removals_then_writes_and_takes_the_newer_meta() {
        let mut base = Section::new("window", 1).with_meta(&1u32).unwrap();
        base.entries = vec![
            (b"a".to_vec(), b"1".to_vec()),
            (b"b".to_vec(), b"2".to_vec()),
        ];
        let mut delta = Section::new("window", 2).with_meta(&7u32).unwrap();
        delta.removed = vec![b"a".to_vec()];
        delta.entries = vec![
            (b"b".to_vec(), b"3".to_vec()),
            (b"c".to_vec(), b"4".to_vec()),
        ];
        base.fold(&delta);
        assert_eq!(
            base.entries,
            vec![
                (b"b".to_vec(), b"3".to_vec()),
                (b"c".to_vec(), b"4".to_vec())
            ]
        );
        assert_eq!((base.version, base.meta::<u32>(2).unwrap()), (2, 7));
    }

    #[test]
    fn table_keys_round_trip_and_bad_ones_are_errors() {
        for (key, name) in [
            (&b""[..], ""),
            (b"user-1", "spend"),
            (b"\x00\xff", "n\u{e9}"),
        ] {
            let encoded = state_key(key, name);
            assert_eq!(
                parse_state_key(&encoded).unwrap(),
                (key.to_vec(), name.to_owned())
            );
        }
        assert!(parse_state_key(b"\x01").is_err());
        assert!(parse_state_key(b"\x09\x00\x00\x00ab").is_err());
        let encoded = window_key(b"k", -5, i64::MAX);
        assert_eq!(
            parse_window_key(&encoded).unwrap(),
            (b"k".to_vec(), -5, i64::MAX)
        );
        assert!(parse_window_key(&encoded[..10]).is_err());
    }

    #[test]
    fn a_newer_section_version_is_refused_naming_both() {
        let section = Section::new("plugin/fraud", 3).with_meta(&0u8).unwrap();
        let err = section.meta::<u8>(2).unwrap_err().to_string();
        assert!(
            err.contains("`plugin/fraud`")
                && err.contains("version 3")
                && err.contains("version 2"),
            "{err}"
        );
    }
}
