//! An in-memory host for testing plugins natively, with plain `cargo test`.
//!
//! [`MockHost`] plays the Eddy host's part: it holds keyed state and side-input tables,
//! captures log messages, and enforces the host's rule that state is only touched for the
//! keys of the batch being processed.
//!
//! ```
//! use eddy_plugin_sdk::{mock::MockHost, Batch, Config, Filter, PackedBatch, Plugin, Selection};
//!
//! struct Even;
//! impl Plugin for Even {
//!     fn init(_: &Config) -> Result<Self, String> { Ok(Even) }
//! }
//! impl Filter for Even {
//!     fn select(&mut self, batch: &Batch<'_>, out: &mut Selection) {
//!         for event in batch.iter() {
//!             if event.timestamp() % 2 == 0 { out.keep(&event) }
//!         }
//!     }
//! }
//!
//! let host = MockHost::new();
//! let mut even = host.init::<Even>(&Config::default()).unwrap();
//! let batch = PackedBatch::from_events([("k", 1, "{}"), ("k", 2, "{}")]);
//! assert_eq!(host.select(&mut even, &batch).kept(), &[1]);
//! ```

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use crate::host::Level;
use crate::{Aggregate, Config, Filter, Output, PackedBatch, Plugin, Selection, Transform};

/// A stand-in for the Eddy host in native tests.
#[derive(Debug, Clone, Default)]
pub struct MockHost {
    inner: Rc<RefCell<MockState>>,
}

#[derive(Debug, Default)]
struct MockState {
    state: HashMap<(Vec<u8>, String), Vec<u8>>,
    tables: HashMap<String, HashMap<Vec<u8>, Vec<u8>>>,
    logs: Vec<(Level, String)>,
    /// Keys of the batch being processed; state calls for other keys are refused.
    batch_keys: HashSet<Vec<u8>>,
    /// Values of the batch being processed, for `field_numbers`.
    values: Vec<u8>,
    value_ends: Vec<u32>,
}

impl MockHost {
    /// An empty host: no state, no tables.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a row to side-input table `table` (creating the table), as a JSON object.
    pub fn with_row(self, table: &str, key: &str, row: &str) -> Self {
        self.inner
            .borrow_mut()
            .tables
            .entry(table.to_owned())
            .or_default()
            .insert(key.as_bytes().to_vec(), row.as_bytes().to_vec());
        self
    }

    /// Declares an empty side-input table.
    pub fn with_table(self, table: &str) -> Self {
        self.inner
            .borrow_mut()
            .tables
            .entry(table.to_owned())
            .or_default();
        self
    }

    /// Creates a plugin from its config, as the host does when it loads it.
    pub fn init<P: Plugin>(&self, config: &Config) -> Result<P, String> {
        self.run(&PackedBatch::default(), || P::init(config))
    }

    /// Runs a filter over `batch`.
    pub fn select<F: Filter>(&self, filter: &mut F, batch: &PackedBatch) -> Selection {
        let mut out = Selection::with_capacity(batch.len());
        self.run(batch, || filter.select(&batch.host_view(), &mut out));
        out
    }

    /// Runs a transform over `batch`.
    pub fn process<T: Transform>(&self, transform: &mut T, batch: &PackedBatch) -> Output {
        let mut out = Output::default();
        self.run(batch, || transform.process(&batch.host_view(), &mut out));
        out
    }

    /// Folds every event of `batch` into one accumulator, as the host does for the events
    /// of one key and window, and returns the result's JSON text (the accumulator goes
    /// through `encode` and `decode` on the way, as it does between host calls).
    pub fn aggregate<A: Aggregate>(
        &self,
        aggregate: &mut A,
        batch: &PackedBatch,
    ) -> Result<String, String> {
        let mut acc = A::Acc::default();
        self.run(batch, || {
            batch
                .view()
                .iter()
                .for_each(|e| aggregate.fold(&mut acc, &e))
        });
        let mut bytes = Vec::new();
        A::encode(&acc, &mut bytes);
        let acc = A::decode(&bytes)?;
        let mut out = Vec::new();
        self.run(batch, || aggregate.finish(&acc, &mut out));
        String::from_utf8(out).map_err(|e| e.to_string())
    }

    /// Keyed state `name` of `key`, as the plugin left it.
    pub fn state(&self, key: &str, name: &str) -> Option<Vec<u8>> {
        self.inner
            .borrow()
            .state
            .get(&(key.as_bytes().to_vec(), name.to_owned()))
            .cloned()
    }

    /// Everything the plugin logged so far.
    pub fn logs(&self) -> Vec<(Level, String)> {
        self.inner.borrow().logs.clone()
    }

    fn run<R>(&self, batch: &PackedBatch, f: impl FnOnce() -> R) -> R {
        let keys = batch.view().iter().map(|e| e.key().to_vec()).collect();
        let mut inner = self.inner.borrow_mut();
        inner.batch_keys = keys;
        inner.values.clone_from(&batch.values);
        inner.value_ends.clone_from(&batch.value_ends);
        drop(inner);
        let previous = current::CURRENT.with(|c| c.replace(Some(self.inner.clone())));
        let result = f();
        current::CURRENT.with(|c| c.replace(previous));
        result
    }
}

/// The host calls of [`crate::host`], served by the mock host that is running the plugin.
pub(crate) mod current {
    use super::*;

    thread_local! {
        pub(super) static CURRENT: RefCell<Option<Rc<RefCell<MockState>>>> = const { RefCell::new(None) };
    }

    fn with<R>(f: impl FnOnce(&mut MockState) -> R) -> R {
        CURRENT.with(|c| {
            let current = c.borrow();
            let state = current
                .as_ref()
                .expect("host call outside a plugin call: run the plugin through MockHost");
            let mut state = state.borrow_mut();
            f(&mut state)
        })
    }

    fn check_key(state: &MockState, key: &[u8]) {
        assert!(
            state.batch_keys.contains(key),
            "state key {:?} is not the key of an event in the current batch; the host refuses it",
            String::from_utf8_lossy(key)
        );
    }

    pub fn log(level: Level, message: &str) {
        with(|s| s.logs.push((level, message.to_owned())))
    }

    pub fn state_get(key: &[u8], name: &str) -> Option<Vec<u8>> {
        with(|s| {
            check_key(s, key);
            s.state.get(&(key.to_vec(), name.to_owned())).cloned()
        })
    }

    pub fn state_set(key: &[u8], name: &str, value: &[u8]) {
        with(|s| {
            check_key(s, key);
            s.state
                .insert((key.to_vec(), name.to_owned()), value.to_vec());
        })
    }

    pub fn state_delete(key: &[u8], name: &str) {
        with(|s| {
            check_key(s, key);
            s.state.remove(&(key.to_vec(), name.to_owned()));
        })
    }

    /// Unlike the host, which parses a field from the batch after the one it was first
    /// asked for, the mock answers at once: it is there to check results, not speed.
    pub fn field_numbers(name: &str) -> Vec<f64> {
        with(|s| {
            let mut numbers = Vec::new();
            crate::json::field_numbers(&s.values, &s.value_ends, name, &mut numbers);
            numbers
        })
    }

    pub fn lookup(table: &str, key: &[u8]) -> Option<Vec<u8>> {
        with(|s| {
            let rows = s.tables.get(table).unwrap_or_else(|| {
                panic!("no side-input table `{table}`; declare it on the MockHost")
            });
            rows.get(key).cloned()
        })
    }
}
