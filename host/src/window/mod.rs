//! Keyed event-time windows: assigners, aggregates and the window operator.

mod accs;
mod aggregate;
mod assigner;
mod checkpoint;
mod due;
mod operator;
mod prefetch;
mod slots;
mod table;

pub use accs::Accs;
pub use aggregate::{write_number, Acc, Aggregator, AggregatorVersion, Builtin};
pub use assigner::{window_start, Assigner, TimeWindow};
pub use checkpoint::{WindowSnapshot, SECTION};
pub use operator::{Results, Spill, WindowCounters, WindowOperator, SPILL_BYTES};

#[cfg(test)]
mod tests;
