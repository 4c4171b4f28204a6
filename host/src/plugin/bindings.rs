//! Host bindings generated from `wit/eddy.wit`, one module per world. The `transform`
//! world reuses the `filter` world's `types` and `host` interfaces, so both worlds share
//! one [`Batch`] type and one host implementation.

// Generated code: its items are documented in `wit/eddy.wit`.
#![allow(missing_docs)]

/// The `filter` world, with the shared `types` and `host` interfaces.
pub mod filter {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "eddy:plugin/filter",
        imports: { default: trappable },
    });
}

/// The `transform` world.
pub mod transform {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "eddy:plugin/transform",
        imports: { default: trappable },
        with: {
            "eddy:plugin/types": super::filter::eddy::plugin::types,
            "eddy:plugin/host": super::filter::eddy::plugin::host,
        },
    });
}

/// The `aggregate` world.
pub mod aggregate {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "eddy:plugin/aggregate",
        imports: { default: trappable },
        with: {
            "eddy:plugin/types": super::filter::eddy::plugin::types,
            "eddy:plugin/host": super::filter::eddy::plugin::host,
        },
    });
}

pub use filter::eddy::plugin::host::{Host, Level};
pub use filter::eddy::plugin::types::{Batch, Packed, PackedHeaders, Rejection};
