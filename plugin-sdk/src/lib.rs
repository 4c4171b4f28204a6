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

#![warn(missing_docs)]

extern crate self as eddy_plugin_sdk;

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

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

pub use batch::{Batch, Event, Events, PackedBatch, PackedHeaders};
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

/// A filter or transform with in-memory state of its own (the `state` interface), which
/// the host keeps in checkpoints and hands to the next version at a hot swap. Export it
/// with [`export_state!`] beside the plugin's own export macro.
///
/// Keyed state (`host::state_set`) needs none of this: the host owns it. This is for state
/// the plugin keeps in its own memory: counters, caches, models.
///
/// ```
/// use eddy_plugin_sdk::{Config, Plugin, Stateful};
///
/// /// Counts the events it has seen, across restarts.
/// pub struct Counter { seen: u64 }
/// impl Plugin for Counter {
///     fn init(_: &Config) -> Result<Self, String> { Ok(Self { seen: 0 }) }
/// }
/// impl Stateful for Counter {
///     const STATE_VERSION: u32 = 1;
///     fn snapshot(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
///         out.extend_from_slice(&self.seen.to_le_bytes());
///         Ok(())
///     }
///     fn restore(&mut self, _version: u32, bytes: &[u8]) -> Result<(), String> {
///         let bytes = bytes.try_into().map_err(|_| "a count is 8 bytes")?;
///         self.seen = u64::from_le_bytes(bytes);
///         Ok(())
///     }
/// }
/// eddy_plugin_sdk::export_state!(Counter);
/// ```
pub trait Stateful: Plugin {
    /// The format version of the state this build writes (the author's own numbering,
    /// from 1): bump it when [`Stateful::snapshot`]'s bytes or the keyed state the plugin
    /// stores change shape.
    const STATE_VERSION: u32;

    /// Writes the plugin's in-memory state (at checkpoints, and on the old version at a
    /// hot swap).
    fn snapshot(&mut self, out: &mut Vec<u8>) -> Result<(), String>;

    /// Restores state written by `snapshot` of a build whose `STATE_VERSION` was `version`
    /// (maybe older than this build's). An error refuses this build.
    fn restore(&mut self, version: u32, bytes: &[u8]) -> Result<(), String>;

    /// Rewrites one entry of keyed state written by a build whose `STATE_VERSION` was
    /// `from_version` (older than this build's): the new value, or `None` to delete the
    /// entry. By default entries are kept as they are.
    fn migrate(
        &mut self,
        _from_version: u32,
        _key: &[u8],
        _name: &str,
        value: &[u8],
    ) -> Result<Option<Vec<u8>>, String> {
        Ok(Some(value.to_vec()))
    }
}

/// A user-defined window aggregate (the `aggregate` world): the host keeps one
/// accumulator per key and window, as bytes it checkpoints, and calls the plugin to fold
/// events into it, merge two of them (sessions) and turn one into the result.
///
/// ```
/// use eddy_plugin_sdk::{Aggregate, Config, Event, Plugin};
///
/// /// The largest `amount`.
/// pub struct Largest;
/// impl Plugin for Largest {
///     fn init(_: &Config) -> Result<Self, String> { Ok(Largest) }
/// }
/// impl Aggregate for Largest {
///     type Acc = Option<f64>;
///     fn fold(&mut self, acc: &mut Option<f64>, event: &Event<'_>) {
///         if let Some(v) = event.field("amount").and_then(|f| f.as_f64()) {
///             *acc = Some(acc.map_or(v, |a| a.max(v)));
///         }
///     }
///     fn merge(&mut self, acc: &mut Option<f64>, other: Option<f64>) {
///         if let Some(v) = other { self.fold_value(acc, v) }
///     }
///     fn finish(&mut self, acc: &Option<f64>, out: &mut Vec<u8>) {
///         out.extend_from_slice(acc.map_or("null".into(), |v| v.to_string()).as_bytes());
///     }
///     fn encode(acc: &Option<f64>, out: &mut Vec<u8>) {
///         if let Some(v) = acc { out.extend_from_slice(&v.to_le_bytes()) }
///     }
///     fn decode(bytes: &[u8]) -> Result<Option<f64>, String> {
///         Ok(bytes.try_into().ok().map(f64::from_le_bytes))
///     }
/// }
/// impl Largest {
///     fn fold_value(&self, acc: &mut Option<f64>, v: f64) { *acc = Some(acc.map_or(v, |a| a.max(v))) }
/// }
/// eddy_plugin_sdk::export_aggregate!(Largest);
/// ```
pub trait Aggregate: Plugin {
    /// The state of one key and window; `Default` is the empty accumulator.
    type Acc: Default;

    /// Folds one event into an accumulator.
    fn fold(&mut self, acc: &mut Self::Acc, event: &Event<'_>);

    /// Merges `other` into `acc` (session windows that grow together).
    fn merge(&mut self, acc: &mut Self::Acc, other: Self::Acc);

    /// Writes the result of an accumulator as one JSON value.
    fn finish(&mut self, acc: &Self::Acc, out: &mut Vec<u8>);

    /// Writes an accumulator as the bytes the host stores (and checkpoints).
    fn encode(acc: &Self::Acc, out: &mut Vec<u8>);

    /// Reads an accumulator written by [`Aggregate::encode`].
    fn decode(bytes: &[u8]) -> Result<Self::Acc, String>;
}

/// Exports a [`Filter`] type as the component's `filter-plugin` world (the `lifecycle`
/// and `filter` interfaces). Use once per crate.
#[macro_export]
macro_rules! export_filter {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct EddyExport;
            impl $crate::guest::lifecycle::exports::eddy::plugin::lifecycle::Guest for EddyExport {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::guest::init::<$plugin>(config)
                }
            }
            impl $crate::guest::filter::exports::eddy::plugin::filter::Guest for EddyExport {
                fn select(batch: $crate::guest::WitBatch) -> $crate::guest::SelectResult {
                    $crate::guest::select::<$plugin>(batch)
                }
            }
    $crate::guest::lifecycle::export!(EddyExport with_types_in $crate::guest::lifecycle);
    $crate::guest::filter::export!(EddyExport with_types_in $crate::guest::filter);
        };
    };
}

/// Exports a [`Transform`] type as the component's `transform-plugin` world (the
/// `lifecycle` and `transform` interfaces). Use once per crate.
#[macro_export]
macro_rules! export_transform {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct EddyExport;
            impl $crate::guest::lifecycle::exports::eddy::plugin::lifecycle::Guest for EddyExport {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::guest::init::<$plugin>(config)
                }
            }
            impl $crate::guest::transform::exports::eddy::plugin::transform::Guest for EddyExport {
                fn process(batch: $crate::guest::WitBatch) -> $crate::guest::ProcessResult {
                    $crate::guest::process::<$plugin>(batch)
                }
            }
    $crate::guest::lifecycle::export!(EddyExport with_types_in $crate::guest::lifecycle);
    $crate::guest::transform::export!(EddyExport with_types_in $crate::guest::transform);
        };
    };
}

/// Exports an [`Aggregate`] type as the component's `aggregate-plugin` world (the
/// `lifecycle` and `aggregate` interfaces). Use once per crate.
#[macro_export]
macro_rules! export_aggregate {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct EddyExport;
            impl $crate::guest::lifecycle::exports::eddy::plugin::lifecycle::Guest for EddyExport {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::guest::init::<$plugin>(config)
                }
            }
            impl $crate::guest::aggregate::exports::eddy::plugin::aggregate::Guest for EddyExport {
                fn create() -> ::std::vec::Vec<u8> {
                    $crate::guest::create::<$plugin>()
                }
                fn fold(
                    batch: $crate::guest::WitBatch,
                    accumulators: $crate::guest::WitPacked,
                    events: ::std::vec::Vec<u32>,
                    targets: ::std::vec::Vec<u32>,
                ) -> ::std::result::Result<$crate::guest::WitPacked, ::std::string::String>
                {
                    $crate::guest::fold::<$plugin>(batch, accumulators, events, targets)
                }
                fn merge(
                    a: ::std::vec::Vec<u8>,
                    b: ::std::vec::Vec<u8>,
                ) -> ::std::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                    $crate::guest::merge::<$plugin>(a, b)
                }
                fn finish(
                    accumulators: $crate::guest::WitPacked,
                ) -> ::std::result::Result<$crate::guest::WitPacked, ::std::string::String>
                {
                    $crate::guest::finish::<$plugin>(accumulators)
                }
            }
    $crate::guest::lifecycle::export!(EddyExport with_types_in $crate::guest::lifecycle);
    $crate::guest::aggregate::export!(EddyExport with_types_in $crate::guest::aggregate);
        };
    };
}

/// Exports a [`Stateful`] plugin's `state` interface, beside its [`export_filter!`] or
/// [`export_transform!`] (the component then has the `stateful-filter-plugin` or
/// `stateful-transform-plugin` world). Use once per crate.
#[macro_export]
macro_rules! export_state {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct EddyStateExport;
            impl $crate::guest::state::exports::eddy::plugin::state::Guest for EddyStateExport {
                fn state_version() -> u32 {
                    $crate::guest::state_version::<$plugin>()
                }
                fn snapshot() -> ::std::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                    $crate::guest::snapshot::<$plugin>()
                }
                fn restore(
                    version: u32,
                    bytes: ::std::vec::Vec<u8>,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::guest::restore::<$plugin>(version, bytes)
                }
                fn migrate(
                    from_version: u32,
                    keys: $crate::guest::WitPacked,
                    names: ::std::vec::Vec<::std::string::String>,
                    values: $crate::guest::WitPacked,
                ) -> ::std::result::Result<
                    ::std::vec::Vec<::std::option::Option<::std::vec::Vec<u8>>>,
                    ::std::string::String,
                > {
                    $crate::guest::migrate::<$plugin>(from_version, keys, names, values)
                }
            }
    $crate::guest::state::export!(EddyStateExport with_types_in $crate::guest::state);
        };
    };
}
