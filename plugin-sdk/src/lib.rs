//! Write [Eddy](https://example.invalid/eddy) stream-processing plugins in Rust.
//!
//! A plugin is a type that implements [`Plugin`] (how it is created from its config) and
//! either [`Filter`] (keeps or drops events) or [`Transform`] (rewrites, enriches or fans
//! out events), plus one export macro. The host calls it once per batch; the plugin walks
//! the batch's [`Event`]s, which borrow from the host's packed buffers, so nothing is
//! copied or allocated per event unless the plugin asks for it.
//!
//! ```
//! use eddy_plugin_sdk::{Batch, Config, Filter, Plugin, Selection};
//!
//! /// Keeps events whose `amount` is at least `min`.
//! pub struct BigSpenders { min: f64 }
//!
//! impl Plugin for BigSpenders {
//!     fn init(config: &Config) -> Result<Self, String> {
//!         Ok(Self { min: config.parse("min")?.unwrap_or(100.0) })
//!     }
//! }
//!
//! impl Filter for BigSpenders {
//!     fn select(&mut self, batch: &Batch<'_>, out: &mut Selection) {
//!         for event in batch.iter() {
//!             match event.field("amount").and_then(|f| f.as_f64()) {
//!                 Some(amount) if amount >= self.min => out.keep(&event),
//!                 Some(_) => {}
//!                 None => out.reject(&event, "no numeric `amount`"),
//!             }
//!         }
//!     }
//! }
//!
//! eddy_plugin_sdk::export_filter!(BigSpenders);
//! ```
//!
//! Build it as a component with `cargo build --release --target wasm32-wasip2` (the crate
//! is a `cdylib`), and test it natively against [`mock::MockHost`].

extern crate self as eddy_plugin_sdk;

mod batch;
mod config;
pub mod host;
pub mod json;
#[cfg(not(target_arch = "wasm32"))]
pub mod mock;
mod output;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod guest;

pub use batch::{Batch, Event, PackedBatch, PackedHeaders};
pub use config::Config;
pub use json::Field;
pub use output::{Output, Rejection, Selection};

/// How a plugin is created: from its stage's `config` table in the pipeline file.
pub trait Plugin: Sized + 'static {
    /// Creates the plugin. An error refuses it: the pipeline does not start, or a hot swap
    /// keeps the old version running, and the message is shown to the operator.
    fn init(config: &Config) -> Result<Self, String>;
}

/// A plugin that keeps or drops events (the `filter` world).
pub trait Filter: Plugin {
    /// Decides, for each event of `batch`, whether to keep it, reject it (to the
    /// dead-letter sink) or drop it (neither).
    fn select(&mut self, batch: &Batch<'_>, out: &mut Selection);
}

/// A plugin that rewrites, enriches, drops or fans out events (the `transform` world).
pub trait Transform: Plugin {
    /// Emits zero or more events for each event of `batch`, in input order.
    fn process(&mut self, batch: &Batch<'_>, out: &mut Output);
}

/// Exports a [`Filter`] type as the component's `filter` world. Use once per crate.
#[macro_export]
macro_rules! export_filter {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct EddyExport;
            impl $crate::guest::filter::Guest for EddyExport {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::guest::init::<$plugin>(config)
                }
                fn select(batch: $crate::guest::WitBatch) -> $crate::guest::SelectResult {
                    $crate::guest::select::<$plugin>(batch)
                }
            }
    $crate::guest::filter::export!(EddyExport with_types_in $crate::guest::filter);
        };
    };
}

/// Exports a [`Transform`] type as the component's `transform` world. Use once per crate.
#[macro_export]
macro_rules! export_transform {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct EddyExport;
            impl $crate::guest::transform::Guest for EddyExport {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::guest::init::<$plugin>(config)
                }
                fn process(batch: $crate::guest::WitBatch) -> $crate::guest::ProcessResult {
                    $crate::guest::process::<$plugin>(batch)
                }
            }
    $crate::guest::transform::export!(EddyExport with_types_in $crate::guest::transform);
        };
    };
}
