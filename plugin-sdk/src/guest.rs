//! The Wasm side of the contract: bindings generated from `wit/eddy.wit`, and the glue the
//! export macros use to connect a [`Plugin`] to them. Not for plugin authors.

use std::any::Any;
use std::cell::RefCell;

use crate::{
    Aggregate, Config, Filter, Output, PackedBatch, PackedHeaders, Plugin, Selection, Stateful,
    Transform,
};

// The bindings, one module per exported interface (`lifecycle`, `filter`, `transform`,
// `aggregate`), sharing one `host` and one `types`; written by build.rs with the contract
// version read from `wit/eddy.wit`.
include!(concat!(env!("OUT_DIR"), "/guest_bindings.rs"));

pub use wit_bindgen::rt;

use filter::eddy::plugin::types as wit;

/// A batch as the bindings pass it.
pub type WitBatch = wit::Batch;
/// Packed byte strings as the bindings pass them.
pub type WitPacked = wit::Packed;
/// What the `filter` world's `select` returns.
pub type SelectResult = (Vec<u32>, Vec<wit::Rejection>);
/// What the `transform` world's `process` returns.
pub type ProcessResult = (WitBatch, Vec<u32>, Vec<wit::Rejection>);

thread_local! {
    /// The component's one plugin instance, created by `init`.
    static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// The `init` export: creates the plugin from its config.
pub fn init<P: Plugin>(config: Vec<(String, String)>) -> Result<(), String> {
    let plugin = P::init(&Config::new(config))?;
    INSTANCE.with(|slot| *slot.borrow_mut() = Some(Box::new(plugin)));
    Ok(())
}

fn with_plugin<P: Plugin, R>(f: impl FnOnce(&mut P) -> R) -> R {
    INSTANCE.with(|slot| {
        let mut slot = slot.borrow_mut();
        let plugin = slot
            .as_mut()
            .and_then(|p| p.downcast_mut::<P>())
            .expect("the host called the plugin before a successful init");
        f(plugin)
    })
}

/// The `select` export of the `filter` world.
pub fn select<F: Filter>(batch: WitBatch) -> SelectResult {
    let batch = unpack(batch);
    let mut out = Selection::with_capacity(batch.len());
    with_plugin(|f: &mut F| f.select(&batch.host_view(), &mut out));
    let (kept, rejected) = out.into_parts();
    (kept, rejected.into_iter().map(rejection).collect())
}

/// The `process` export of the `transform` world.
pub fn process<T: Transform>(batch: WitBatch) -> ProcessResult {
    let batch = unpack(batch);
    let mut out = Output::default();
    with_plugin(|t: &mut T| t.process(&batch.host_view(), &mut out));
    let (batch, origins, rejected) = out.into_parts();
    (
        pack(batch),
        origins,
        rejected.into_iter().map(rejection).collect(),
    )
}

/// The `state-version` export of the `state` interface.
pub fn state_version<S: Stateful>() -> u32 {
    S::STATE_VERSION
}

/// The `snapshot` export of the `state` interface.
pub fn snapshot<S: Stateful>() -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    with_plugin(|s: &mut S| s.snapshot(&mut out))?;
    Ok(out)
}

/// The `restore` export of the `state` interface.
pub fn restore<S: Stateful>(version: u32, bytes: Vec<u8>) -> Result<(), String> {
    with_plugin(|s: &mut S| s.restore(version, &bytes))
}

/// The `migrate` export of the `state` interface: one answer per entry.
pub fn migrate<S: Stateful>(
    from_version: u32,
    keys: WitPacked,
    names: Vec<String>,
    values: WitPacked,
) -> Result<Vec<Option<Vec<u8>>>, String> {
    if keys.ends.len() != names.len() || values.ends.len() != names.len() {
        return Err("migrate: keys, names and values differ in number".into());
    }
    let item = |p: &WitPacked, i: usize| -> Result<Vec<u8>, String> {
        let start = if i == 0 { 0 } else { p.ends[i - 1] as usize };
        p.bytes
            .get(start..p.ends[i] as usize)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| "migrate: offsets past their bytes".to_owned())
    };
    with_plugin(|s: &mut S| {
        (0..names.len())
            .map(|i| {
                s.migrate(
                    from_version,
                    &item(&keys, i)?,
                    &names[i],
                    &item(&values, i)?,
                )
            })
            .collect()
    })
}

/// The `create` export of the `aggregate` world.
pub fn create<A: Aggregate>() -> Vec<u8> {
    let mut out = Vec::new();
    A::encode(&A::Acc::default(), &mut out);
    out
}

/// The `fold` export of the `aggregate` world.
pub fn fold<A: Aggregate>(
    batch: WitBatch,
    accumulators: WitPacked,
    events: Vec<u32>,
    targets: Vec<u32>,
) -> Result<WitPacked, String> {
    let batch = unpack(batch);
    let view = batch.host_view();
    let mut accs = decode_all::<A>(&accumulators)?;
    with_plugin(|a: &mut A| {
        for (&event, &target) in events.iter().zip(&targets) {
            let event = view
                .get(event as usize)
                .ok_or_else(|| format!("event {event} is past the batch of {}", view.len()))?;
            let acc = accs.get_mut(target as usize).ok_or_else(|| {
                format!(
                    "accumulator {target} is past the {} given",
                    accumulators.ends.len()
                )
            })?;
            a.fold(acc, &event);
        }
        Ok::<(), String>(())
    })?;
    Ok(pack_each(accs.iter(), |acc, out| A::encode(acc, out)))
}

/// The `merge` export of the `aggregate` world.
pub fn merge<A: Aggregate>(a: Vec<u8>, b: Vec<u8>) -> Result<Vec<u8>, String> {
    let (mut a, b) = (A::decode(&a)?, A::decode(&b)?);
    with_plugin(|plugin: &mut A| plugin.merge(&mut a, b));
    let mut out = Vec::new();
    A::encode(&a, &mut out);
    Ok(out)
}

/// The `finish` export of the `aggregate` world.
pub fn finish<A: Aggregate>(accumulators: WitPacked) -> Result<WitPacked, String> {
    let accs = decode_all::<A>(&accumulators)?;
    Ok(with_plugin(|plugin: &mut A| {
        pack_each(accs.iter(), |acc, out| plugin.finish(acc, out))
    }))
}

fn decode_all<A: Aggregate>(packed: &WitPacked) -> Result<Vec<A::Acc>, String> {
    let mut start = 0;
    packed
        .ends
        .iter()
        .map(|&end| {
            let bytes = packed
                .bytes
                .get(start..end as usize)
                .ok_or("accumulator offsets are past their bytes")?;
            start = end as usize;
            A::decode(bytes)
        })
        .collect()
}

fn pack_each<T>(
    items: impl Iterator<Item = T>,
    mut write: impl FnMut(T, &mut Vec<u8>),
) -> WitPacked {
    let mut packed = WitPacked {
        bytes: Vec::new(),
        ends: Vec::new(),
    };
    for item in items {
        write(item, &mut packed.bytes);
        packed.ends.push(crate::batch::offset(packed.bytes.len()));
    }
    packed
}

fn rejection(r: crate::Rejection) -> wit::Rejection {
    wit::Rejection {
        index: r.index,
        reason: r.reason,
    }
}

/// Moves the bindings' columns into the SDK's batch type (no copy).
fn unpack(b: WitBatch) -> PackedBatch {
    PackedBatch {
        values: b.values,
        value_ends: b.value_ends,
        keys: b.keys,
        key_ends: b.key_ends,
        timestamps: b.timestamps,
        headers: b.headers.map(|h| PackedHeaders {
            header_ends: h.header_ends,
            names: h.names,
            name_ends: h.name_ends,
            values: h.values,
            value_ends: h.value_ends,
        }),
    }
}

/// Moves the SDK's batch columns into the bindings' type (no copy).
fn pack(b: PackedBatch) -> WitBatch {
    WitBatch {
        values: b.values,
        value_ends: b.value_ends,
        keys: b.keys,
        key_ends: b.key_ends,
        timestamps: b.timestamps,
        headers: b.headers.map(|h| wit::PackedHeaders {
            header_ends: h.header_ends,
            names: h.names,
            name_ends: h.name_ends,
            values: h.values,
            value_ends: h.value_ends,
        }),
    }
}
