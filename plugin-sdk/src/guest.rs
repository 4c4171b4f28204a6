//! The Wasm side of the contract: bindings generated from `wit/eddy.wit`, and the glue the
//! export macros use to connect a [`Plugin`] to them. Not for plugin authors.

use std::any::Any;
use std::cell::RefCell;

use crate::{Config, Filter, Output, PackedBatch, PackedHeaders, Plugin, Selection, Transform};

/// Bindings of the `filter` world (and of the shared `types` and `host` interfaces).
pub mod filter {
    wit_bindgen::generate!({
        path: "../wit",
        world: "eddy:plugin/filter",
        pub_export_macro: true,
        runtime_path: "::eddy_plugin_sdk::guest::rt",
    });
}

/// Bindings of the `transform` world, sharing the `filter` world's interface types.
pub mod transform {
    wit_bindgen::generate!({
        path: "../wit",
        world: "eddy:plugin/transform",
        pub_export_macro: true,
        runtime_path: "::eddy_plugin_sdk::guest::rt",
        with: {
            "eddy:plugin/types@0.1.0": crate::guest::filter::eddy::plugin::types,
            "eddy:plugin/host@0.1.0": crate::guest::filter::eddy::plugin::host,
        },
    });
}

pub use wit_bindgen::rt;

use filter::eddy::plugin::types as wit;

/// A batch as the bindings pass it.
pub type WitBatch = wit::Batch;
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
    let mut out = Selection::default();
    with_plugin(|f: &mut F| f.select(&batch.view(), &mut out));
    let (kept, rejected) = out.into_parts();
    (kept, rejected.into_iter().map(rejection).collect())
}

/// The `process` export of the `transform` world.
pub fn process<T: Transform>(batch: WitBatch) -> ProcessResult {
    let batch = unpack(batch);
    let mut out = Output::default();
    with_plugin(|t: &mut T| t.process(&batch.view(), &mut out));
    let (batch, origins, rejected) = out.into_parts();
    (
        pack(batch),
        origins,
        rejected.into_iter().map(rejection).collect(),
    )
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
