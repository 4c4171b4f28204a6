//! What a plugin's store holds, and the host functions the plugin imports.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::output::LastWords;

use super::bindings::{Host, Level};
use super::side_input::SideInputs;
use crate::batch::packed_item;

/// A keyed-state entry: (key, state name, value).
pub type StateEntry = (Vec<u8>, String, Vec<u8>);
/// A keyed-state entry's identity: (key, state name).
pub type StateKey = (Vec<u8>, String);
/// A write (`Some`) or delete (`None`) of one keyed-state entry.
pub type StateUpdate = (StateKey, Option<Vec<u8>>);

/// A plugin's keyed state, owned by the host. Writes made during a batch stay pending
/// until the batch succeeds, so a batch that fails (and is dead-lettered) leaves no trace.
#[derive(Debug, Default)]
pub struct KeyedState {
    committed: HashMap<(Vec<u8>, String), Vec<u8>>,
    /// Writes of the current batch; `None` is a delete.
    pending: HashMap<(Vec<u8>, String), Option<Vec<u8>>>,
    /// Entries written or deleted since the last snapshot (for incremental checkpoints).
    changed: HashSet<(Vec<u8>, String)>,
    /// Whether changes are tracked (only a checkpointing job needs them).
    pub track_changes: bool,
}

impl KeyedState {
    fn get(&self, key: (Vec<u8>, String)) -> Option<Vec<u8>> {
        match self.pending.get(&key) {
            Some(pending) => pending.clone(),
            None => self.committed.get(&key).cloned(),
        }
    }

    /// Makes the current batch's writes permanent.
    pub fn commit(&mut self) {
        for (key, value) in self.pending.drain() {
            if self.track_changes && !self.changed.contains(&key) {
                self.changed.insert(key.clone());
            }
            match value {
                Some(v) => self.committed.insert(key, v),
                None => self.committed.remove(&key),
            };
        }
    }

    /// Writes (`Some`) or deletes (`None`) entries at once, as a batch that succeeded
    /// would (a keyed-state migration).
    pub fn apply(&mut self, updates: Vec<StateUpdate>) {
        self.pending.extend(updates);
        self.commit();
    }

    /// Forgets the current batch's writes.
    pub fn roll_back(&mut self) {
        self.pending.clear();
    }

    /// Every committed entry as (key, name, value), sorted, for a checkpoint.
    pub fn entries(&self) -> Vec<(Vec<u8>, String, Vec<u8>)> {
        let mut entries: Vec<_> = self
            .committed
            .iter()
            .map(|((k, n), v)| (k.clone(), n.clone(), v.clone()))
            .collect();
        entries.sort();
        entries
    }

    /// The state a checkpoint records: every entry, or with `incremental` the entries
    /// written since the last snapshot and those deleted. Either way it starts a new
    /// round of change tracking.
    pub fn snapshot(&mut self, incremental: bool) -> (Vec<StateEntry>, Vec<StateKey>) {
        let changed = std::mem::take(&mut self.changed);
        if !incremental {
            return (self.entries(), Vec::new());
        }
        let (mut written, mut deleted) = (Vec::new(), Vec::new());
        for (key, name) in changed {
            match self.committed.get(&(key.clone(), name.clone())) {
                Some(value) => written.push((key, name, value.clone())),
                None => deleted.push((key, name)),
            }
        }
        written.sort();
        deleted.sort();
        (written, deleted)
    }

    /// Entries written or deleted since the last snapshot.
    pub fn changes(&self) -> usize {
        self.changed.len()
    }

    /// Replaces the committed state with checkpointed entries.
    pub fn restore(&mut self, entries: &[(Vec<u8>, String, Vec<u8>)]) {
        self.pending.clear();
        self.changed.clear();
        self.committed = entries
            .iter()
            .map(|(k, n, v)| ((k.clone(), n.clone()), v.clone()))
            .collect();
    }

    /// Number of (key, name) entries committed.
    pub fn len(&self) -> usize {
        self.committed.len()
    }
}

/// The keys of the batch being processed; keyed state may only be touched for these.
#[derive(Debug, Default)]
struct BatchKeys {
    keys: Vec<u8>,
    ends: Vec<u32>,
    /// Built on the first state call of a batch; most plugins never make one.
    set: Option<HashSet<Vec<u8>>>,
}

impl BatchKeys {
    fn contains(&mut self, key: &[u8]) -> bool {
        let (keys, ends) = (&self.keys, &self.ends);
        self.set
            .get_or_insert_with(|| {
                (0..ends.len())
                    .map(|i| packed_item(keys, ends, i).to_vec())
                    .collect()
            })
            .contains(key)
    }
}

/// The numeric fields a plugin reads of every event (`field-numbers`), parsed from each
/// batch before the call, with native code and without copying the batch. At most
/// [`BatchNumbers::MAX_FIELDS`] per plugin: the host's parse is not under the plugin's
/// timeout, so a plugin asking for ever new names must not make it unbounded.
#[derive(Debug, Default)]
struct BatchNumbers {
    /// The fields the plugin asked for.
    fields: Vec<NumberColumn>,
    /// Whether the columns hold the batch of a call under way.
    current: bool,
}

/// One field a plugin reads as numbers.
#[derive(Debug)]
struct NumberColumn {
    name: String,
    /// Whether the plugin asked for it during the current call.
    asked: bool,
    /// Its number per event of the current batch.
    numbers: Vec<f64>,
}

impl BatchNumbers {
    /// Fields parsed per batch; a plugin asking for more parses the others itself.
    const MAX_FIELDS: usize = 16;

    /// Parses, from the values of the batch about to be processed, the fields the
    /// plugin asked for in its previous call, and forgets those it did not ask for.
    fn begin_batch(&mut self, values: &[u8], ends: &[u32]) {
        self.fields.retain(|column| column.asked);
        for column in &mut self.fields {
            column.asked = false;
            column.numbers.clear();
            eddy_plugin_sdk::json::field_numbers(values, ends, &column.name, &mut column.numbers);
        }
        self.current = true;
    }

    /// The answer to `field-numbers`: the column of field `name`, or an empty list when
    /// the field was not parsed for this batch (it will be from the next one on).
    fn field_numbers(&mut self, name: &str) -> Vec<f64> {
        match self.fields.iter_mut().find(|column| column.name == name) {
            Some(column) => {
                column.asked = true;
                if self.current {
                    column.numbers.clone()
                } else {
                    Vec::new()
                }
            }
            None => {
                if self.fields.len() < Self::MAX_FIELDS {
                    self.fields.push(NumberColumn {
                        name: name.to_owned(),
                        asked: true,
                        numbers: Vec::new(),
                    });
                }
                Vec::new()
            }
        }
    }
}

/// The data of one plugin's wasmtime store.
pub struct StoreData {
    /// The stage's name, for logs and errors.
    pub plugin: Arc<str>,
    /// The plugin's keyed state.
    pub state: KeyedState,
    side_inputs: SideInputs,
    batch_keys: BatchKeys,
    batch_numbers: BatchNumbers,
    wasi: WasiCtx,
    table: ResourceTable,
    max_memory: usize,
    /// Set when the plugin tried to grow its memory past the limit.
    pub memory_exceeded: bool,
    /// What the plugin last wrote to stderr or logged as an error.
    pub(super) last_words: LastWords,
}

impl StoreData {
    /// Store data for plugin `plugin`.
    pub fn new(
        plugin: Arc<str>,
        state: KeyedState,
        side_inputs: SideInputs,
        wasi: WasiCtx,
        last_words: LastWords,
        max_memory: usize,
    ) -> Self {
        Self {
            plugin,
            state,
            side_inputs,
            batch_keys: BatchKeys::default(),
            batch_numbers: BatchNumbers::default(),
            wasi,
            table: ResourceTable::new(),
            max_memory,
            memory_exceeded: false,
            last_words,
        }
    }

    /// Prepares for a call on a batch with these packed keys and values.
    pub fn begin_batch(
        &mut self,
        keys: &[u8],
        key_ends: &[u32],
        values: &[u8],
        value_ends: &[u32],
    ) {
        let bk = &mut self.batch_keys;
        bk.keys.clear();
        bk.keys.extend_from_slice(keys);
        bk.ends.clear();
        bk.ends.extend_from_slice(key_ends);
        bk.set = None;
        self.batch_numbers.begin_batch(values, value_ends);
    }

    /// Ends the call begun by [`StoreData::begin_batch`]: host calls outside one get no
    /// batch data.
    pub fn end_batch(&mut self) {
        self.batch_numbers.current = false;
    }

    fn check_key(&mut self, key: &[u8], call: &str) -> wasmtime::Result<()> {
        if self.batch_keys.contains(key) {
            return Ok(());
        }
        wasmtime::bail!(
            "plugin `{}` called {call} for key {:?}, which is not the key of an event in the current batch",
            self.plugin,
            String::from_utf8_lossy(key)
        )
    }
}

impl Host for StoreData {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let plugin = &*self.plugin;
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => {
                tracing::error!(plugin, "{message}");
                self.last_words.push_error(&message);
            }
        }
        Ok(())
    }

    fn state_get(&mut self, key: Vec<u8>, name: String) -> wasmtime::Result<Option<Vec<u8>>> {
        self.check_key(&key, "state-get")?;
        Ok(self.state.get((key, name)))
    }

    fn state_set(&mut self, key: Vec<u8>, name: String, value: Vec<u8>) -> wasmtime::Result<()> {
        self.check_key(&key, "state-set")?;
        self.state.pending.insert((key, name), Some(value));
        Ok(())
    }

    fn state_delete(&mut self, key: Vec<u8>, name: String) -> wasmtime::Result<()> {
        self.check_key(&key, "state-delete")?;
        self.state.pending.insert((key, name), None);
        Ok(())
    }

    fn lookup(&mut self, table: String, key: Vec<u8>) -> wasmtime::Result<Option<Vec<u8>>> {
        match self.side_inputs.lookup(&table, &key) {
            Some(row) => Ok(row),
            None => wasmtime::bail!(
                "plugin `{}` looked up side-input table `{table}`, which the pipeline does not declare; add a [[side_input]] named `{table}`",
                self.plugin
            ),
        }
    }

    fn field_numbers(&mut self, name: String) -> wasmtime::Result<Vec<f64>> {
        Ok(self.batch_numbers.field_numbers(&name))
    }
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl ResourceLimiter for StoreData {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.memory_exceeded = true;
            wasmtime::bail!(
                "plugin `{}` exceeded its memory limit of {} MiB",
                self.plugin,
                self.max_memory >> 20
            );
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two events' values, packed.
    fn packed(a: &str, b: &str) -> (Vec<u8>, Vec<u32>) {
        let values = format!("{a}{b}").into_bytes();
        (values, vec![a.len() as u32, (a.len() + b.len()) as u32])
    }

    #[test]
    fn field_numbers_are_parsed_from_the_batch_after_the_first_ask() {
        let mut numbers = BatchNumbers::default();
        let (values, ends) = packed(r#"{"amount": 1.5}"#, r#"{"other": 2}"#);
        numbers.begin_batch(&values, &ends);
        // Not known before this batch: the plugin parses it itself this time.
        assert!(numbers.field_numbers("amount").is_empty());
        let (values, ends) = packed(r#"{"amount": 7}"#, r#"{"amount": "x"}"#);
        numbers.begin_batch(&values, &ends);
        let column = numbers.field_numbers("amount");
        assert_eq!(column.len(), 2);
        assert_eq!(column[0], 7.0);
        assert!(column[1].is_nan());
        // Outside a call there is no batch to answer for.
        numbers.current = false;
        assert!(numbers.field_numbers("amount").is_empty());
        // A call that did not ask for the field: it is no longer parsed after it.
        numbers.begin_batch(&values, &ends);
        numbers.begin_batch(&values, &ends);
        assert!(numbers.fields.is_empty());
        assert!(numbers.field_numbers("amount").is_empty());
    }

    #[test]
    fn a_plugin_cannot_make_the_host_parse_unbounded_fields() {
        let mut numbers = BatchNumbers::default();
        numbers.begin_batch(b"", &[]);
        for i in 0..100 {
            numbers.field_numbers(&format!("f{i}"));
        }
        assert_eq!(numbers.fields.len(), BatchNumbers::MAX_FIELDS);
    }

    #[test]
    fn pending_writes_commit_or_roll_back() {
        let mut state = KeyedState::default();
        let k = |n: &str| (b"k".to_vec(), n.to_owned());
        state.pending.insert(k("a"), Some(b"1".to_vec()));
        assert_eq!(state.get(k("a")), Some(b"1".to_vec()));
        state.roll_back();
        assert_eq!(state.get(k("a")), None);
        state.pending.insert(k("a"), Some(b"2".to_vec()));
        state.commit();
        state.pending.insert(k("a"), None);
        assert_eq!(state.get(k("a")), None);
        state.roll_back();
        assert_eq!(state.get(k("a")), Some(b"2".to_vec()));
        assert_eq!(state.len(), 1);
    }

    #[test]
    fn incremental_snapshots_carry_writes_and_deletes_since_the_last_one() {
        let mut state = KeyedState {
            track_changes: true,
            ..KeyedState::default()
        };
        let k = |key: &str| (key.as_bytes().to_vec(), "n".to_owned());
        state.pending.insert(k("a"), Some(b"1".to_vec()));
        state.pending.insert(k("b"), Some(b"2".to_vec()));
        state.commit();
        assert_eq!(state.snapshot(false).0.len(), 2);
        assert_eq!(state.changes(), 0);
        state.pending.insert(k("a"), None);
        state.pending.insert(k("c"), Some(b"3".to_vec()));
        state.commit();
        let (written, deleted) = state.snapshot(true);
        assert_eq!(
            written,
            vec![(b"c".to_vec(), "n".to_owned(), b"3".to_vec())]
        );
        assert_eq!(deleted, vec![(b"a".to_vec(), "n".to_owned())]);
        assert_eq!(state.snapshot(true), (Vec::new(), Vec::new()));
    }

    #[test]
    fn batch_keys_are_checked() {
        let mut keys = BatchKeys {
            keys: b"ab".to_vec(),
            ends: vec![1, 2],
            set: None,
        };
        assert!(keys.contains(b"a") && keys.contains(b"b"));
        assert!(!keys.contains(b"ab"));
    }
}
