//! Paths of the example plugins, built as `wasm32-wasip2` components by this crate's build
//! script. Tests and benchmarks use these instead of building plugins themselves.
//!
//! ```
//! assert!(std::path::Path::new(eddy_example_artifacts::FILTER_COMPONENT).exists());
//! ```

include!(concat!(env!("OUT_DIR"), "/gen.rs"));
