//! The host's own types for what crosses the plugin boundary: a batch's packed columns,
//! packed byte strings and rejections. They mirror the `types` interface of
//! `wit/eddy.wit` field for field and lower into a plugin call as they are (the plugin
//! bindings are generated to use these types), so the pipeline never touches generated
//! code and a batch is never converted or copied on its way into a plugin.
//!
//! Invariant: each type here has exactly the fields, in the same order and with the same
//! WIT names, as its record in `wit/eddy.wit`; wasmtime checks this when a plugin is
//! loaded, so a mismatch fails every plugin load (and the tests), never silently.

use wasmtime::component::{ComponentType, Lift, Lower};

/// A batch of events, column by column (the WIT record `batch`).
///
/// Event `i`'s value is `values[value_ends[i-1] .. value_ends[i]]` (with
/// `value_ends[-1]` = 0); its key is packed likewise in `keys`, and its event time is
/// `timestamps[i]`.
#[derive(Debug, Clone, Default, PartialEq, ComponentType, Lower, Lift)]
#[component(record)]
pub struct Columns {
    /// The values (JSON objects, UTF-8) of all events, back to back.
    pub values: Vec<u8>,
    /// End offset of each event's value in `values`.
    #[component(name = "value-ends")]
    pub value_ends: Vec<u32>,
    /// The keys of all events, back to back; an event without a key has an empty one.
    pub keys: Vec<u8>,
    /// End offset of each event's key in `keys`.
    #[component(name = "key-ends")]
    pub key_ends: Vec<u32>,
    /// Event time of each event, in milliseconds since the Unix epoch.
    pub timestamps: Vec<i64>,
    /// Headers of the events, if any event has one.
    pub headers: Option<Headers>,
}

/// Headers of all events in a batch, flat (the WIT record `packed-headers`): event `i`
/// owns headers `header_ends[i-1] .. header_ends[i]`; header `h`'s name and value are
/// packed like values.
#[derive(Debug, Clone, Default, PartialEq, ComponentType, Lower, Lift)]
#[component(record)]
pub struct Headers {
    /// End index (into the header list) of each event's headers.
    #[component(name = "header-ends")]
    pub header_ends: Vec<u32>,
    /// Header names, back to back.
    pub names: Vec<u8>,
    /// End offset of each header's name in `names`.
    #[component(name = "name-ends")]
    pub name_ends: Vec<u32>,
    /// Header values, back to back.
    pub values: Vec<u8>,
    /// End offset of each header's value in `values`.
    #[component(name = "value-ends")]
    pub value_ends: Vec<u32>,
}

/// Byte strings back to back (the WIT record `packed`): item `i` is
/// `bytes[ends[i-1] .. ends[i]]`.
#[derive(Debug, Clone, Default, PartialEq, ComponentType, Lower, Lift)]
#[component(record)]
pub struct Packed {
    /// The items' bytes, back to back.
    pub bytes: Vec<u8>,
    /// End offset of each item in `bytes`.
    pub ends: Vec<u32>,
}

impl Packed {
    /// Packs `items` back to back.
    pub fn from_items<'a>(items: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut packed = Self::default();
        for item in items {
            packed.push(item);
        }
        packed
    }

    /// Appends one item.
    pub fn push(&mut self, item: &[u8]) {
        self.bytes.extend_from_slice(item);
        self.ends.push(super::end_offset(self.bytes.len()));
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Item `i`.
    pub fn get(&self, i: usize) -> &[u8] {
        super::packed_item(&self.bytes, &self.ends, i)
    }
}

/// One input event refused by a plugin (the WIT record `rejection`).
#[derive(Debug, Clone, PartialEq, Eq, ComponentType, Lower, Lift)]
#[component(record)]
pub struct Rejection {
    /// Index of the refused event in the input batch.
    pub index: u32,
    /// Why it was refused, for the operator who reads the dead-letter sink.
    pub reason: String,
}

/// The module the plugin bindings take the `types` interface from: these types under the
/// names the WIT gives them, plus the (empty) host side of an interface that declares
/// only types, which the bindings expect of every interface they are given.
pub mod wit {
    pub use super::{Columns as Batch, Headers as PackedHeaders, Packed, Rejection};

    /// The host side of `types`: it has no functions.
    pub trait Host {}

    impl<T: Host + ?Sized> Host for &mut T {}

    /// The host side of `types` with store access: it has no functions.
    pub trait HostWithStore<T>: wasmtime::component::HasData {}

    impl<H: ?Sized + wasmtime::component::HasData, T> HostWithStore<T> for H {}

    /// Links `types` into a linker: an interface of types only needs no definitions.
    pub fn add_to_linker<T, D>(
        _linker: &mut wasmtime::component::Linker<T>,
        _host_getter: fn(&mut T) -> D::Data<'_>,
    ) -> wasmtime::Result<()>
    where
        D: HostWithStore<T>,
        for<'a> D::Data<'a>: Host,
        T: 'static,
    {
        Ok(())
    }
}
