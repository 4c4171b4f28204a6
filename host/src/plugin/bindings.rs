//! Host bindings generated from `wit/eddy.wit`. The host uses them per exported
//! interface, not per world: a component is recognised by the interfaces it exports
//! (see `contract`), and each interface it has is loaded from its instance. The `types`
//! interface maps onto the host's own types in [`crate::batch`], so the pipeline never
//! sees generated code.

// Generated code: its items are documented in `wit/eddy.wit`.
#![allow(missing_docs)]

/// The `host` import and the `lifecycle`, `filter` and `state` exports.
mod filter_world {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "eddy:plugin/stateful-filter-plugin",
        imports: { default: trappable },
        with: { "eddy:plugin/types": crate::batch::wit },
    });
}

/// The `transform` export.
mod transform_world {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "eddy:plugin/transform-plugin",
        imports: { default: trappable },
        with: {
            "eddy:plugin/types": crate::batch::wit,
            "eddy:plugin/host": super::filter_world::eddy::plugin::host,
        },
    });
}

/// The `aggregate` export.
mod aggregate_world {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "eddy:plugin/aggregate-plugin",
        imports: { default: trappable },
        with: {
            "eddy:plugin/types": crate::batch::wit,
            "eddy:plugin/host": super::filter_world::eddy::plugin::host,
        },
    });
}

pub use aggregate_world::exports::eddy::plugin::aggregate;
pub use filter_world::eddy::plugin::host::{add_to_linker, Host, Level};
pub use filter_world::exports::eddy::plugin::{filter, lifecycle, state};
pub use transform_world::exports::eddy::plugin::transform;
