//! Keyed event-time windows: assigners, aggregates and the window operator.

mod aggregate;
mod assigner;
mod operator;

pub use aggregate::{write_number, Acc, Aggregator, Builtin};
pub use assigner::{window_start, Assigner, TimeWindow};
pub use operator::{WindowCounters, WindowOperator};

#[cfg(test)]
mod tests;
