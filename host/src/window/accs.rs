//! The accumulators of open windows, by slot, stored by kind: a count or a sum takes 8
//! bytes per window, an average 16, where a [`Acc`] value takes 24 (its largest variant
//! and its tag).
//!
//! Invariants: slot `s` of the column is the accumulator of window slot `s`; the column
//! takes the kind of the first accumulator stored, and turns into a column of [`Acc`]
//! values (`Mixed`) if one of another kind is ever stored, so nothing is lost.

use super::aggregate::Acc;
use super::prefetch::prefetch;

/// Accumulators by window slot.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Accs {
    /// None stored yet.
    #[default]
    Empty,
    /// `count`.
    Count(Vec<u64>),
    /// `sum`.
    Sum(Vec<f64>),
    /// `min`.
    Min(Vec<f64>),
    /// `max`.
    Max(Vec<f64>),
    /// `avg`: sum and count.
    Avg(Vec<(f64, u64)>),
    /// A Wasm aggregate's accumulators, opaque to the host.
    Bytes(Vec<Box<[u8]>>),
    /// Accumulators of several kinds (after an aggregate of another kind took over).
    Mixed(Vec<Acc>),
}

impl Accs {
    /// Number of slots held.
    pub fn len(&self) -> usize {
        match self {
            Self::Empty => 0,
            Self::Count(v) => v.len(),
            Self::Sum(v) | Self::Min(v) | Self::Max(v) => v.len(),
            Self::Avg(v) => v.len(),
            Self::Bytes(v) => v.len(),
            Self::Mixed(v) => v.len(),
        }
    }

    /// Whether no slot is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The accumulator of `slot`.
    pub fn get(&self, slot: u32) -> Acc {
        let s = slot as usize;
        match self {
            Self::Empty => panic!("no accumulator in slot {slot}"),
            Self::Count(v) => Acc::Count(v[s]),
            Self::Sum(v) => Acc::Sum(v[s]),
            Self::Min(v) => Acc::Min(v[s]),
            Self::Max(v) => Acc::Max(v[s]),
            Self::Avg(v) => Acc::Avg {
                sum: v[s].0,
                count: v[s].1,
            },
            Self::Bytes(v) => Acc::Bytes(v[s].clone()),
            Self::Mixed(v) => v[s].clone(),
        }
    }

    /// The bytes of a Wasm aggregate's accumulator in `slot` (empty for any other kind).
    pub fn bytes(&self, slot: u32) -> &[u8] {
        match self {
            Self::Bytes(v) => &v[slot as usize],
            Self::Mixed(v) => match &v[slot as usize] {
                Acc::Bytes(b) => b,
                _ => &[],
            },
            _ => &[],
        }
    }

    /// Brings the accumulator of `slot` into the cache ahead of its use.
    pub(super) fn prefetch(&self, slot: u32) {
        let s = slot as usize;
        match self {
            Self::Empty => {}
            Self::Count(v) => prefetch(&v[s]),
            Self::Sum(v) | Self::Min(v) | Self::Max(v) => prefetch(&v[s]),
            Self::Avg(v) => prefetch(&v[s]),
            Self::Bytes(v) => prefetch(&v[s]),
            Self::Mixed(v) => prefetch(&v[s]),
        }
    }

    /// Stores `acc` as a new slot at the end.
    pub fn push(&mut self, acc: Acc) {
        if matches!(self, Self::Empty) {
            *self = Self::of_kind(&acc);
        }
        match (&mut *self, acc) {
            (Self::Count(v), Acc::Count(n)) => v.push(n),
            (Self::Sum(v), Acc::Sum(x))
            | (Self::Min(v), Acc::Min(x))
            | (Self::Max(v), Acc::Max(x)) => v.push(x),
            (Self::Avg(v), Acc::Avg { sum, count }) => v.push((sum, count)),
            (Self::Bytes(v), Acc::Bytes(b)) => v.push(b),
            (_, acc) => self.mixed().push(acc),
        }
    }

    /// Stores `acc` in `slot`.
    pub fn set(&mut self, slot: u32, acc: Acc) {
        let s = slot as usize;
        match (&mut *self, acc) {
            (Self::Count(v), Acc::Count(n)) => v[s] = n,
            (Self::Sum(v), Acc::Sum(x))
            | (Self::Min(v), Acc::Min(x))
            | (Self::Max(v), Acc::Max(x)) => v[s] = x,
            (Self::Avg(v), Acc::Avg { sum, count }) => v[s] = (sum, count),
            (Self::Bytes(v), Acc::Bytes(b)) => v[s] = b,
            (_, acc) => self.mixed()[s] = acc,
        }
    }

    /// The accumulator of `slot`, leaving the slot's memory free (a Wasm aggregate's
    /// bytes are moved out, not copied).
    pub fn take(&mut self, slot: u32) -> Acc {
        match self {
            Self::Bytes(v) => Acc::Bytes(std::mem::take(&mut v[slot as usize])),
            Self::Mixed(v) => std::mem::replace(&mut v[slot as usize], Acc::Count(0)),
            _ => self.get(slot),
        }
    }

    /// An empty column for accumulators like `acc`.
    fn of_kind(acc: &Acc) -> Self {
        match acc {
            Acc::Count(_) => Self::Count(Vec::new()),
            Acc::Sum(_) => Self::Sum(Vec::new()),
            Acc::Min(_) => Self::Min(Vec::new()),
            Acc::Max(_) => Self::Max(Vec::new()),
            Acc::Avg { .. } => Self::Avg(Vec::new()),
            Acc::Bytes(_) => Self::Bytes(Vec::new()),
        }
    }

    /// Turns the column into one of [`Acc`] values, which holds any kind.
    fn mixed(&mut self) -> &mut Vec<Acc> {
        if !matches!(self, Self::Mixed(_)) {
            let all = (0..self.len() as u32).map(|s| self.get(s)).collect();
            *self = Self::Mixed(all);
        }
        match self {
            Self::Mixed(v) => v,
            _ => unreachable!("just made mixed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_is_stored_in_its_own_column_and_read_back() {
        for acc in [
            Acc::Count(3),
            Acc::Sum(1.5),
            Acc::Min(-2.0),
            Acc::Max(7.0),
            Acc::Avg { sum: 9.0, count: 3 },
            Acc::Bytes(b"opaque"[..].into()),
        ] {
            let mut accs = Accs::default();
            accs.push(acc.clone());
            accs.push(acc.clone());
            assert!(!matches!(accs, Accs::Mixed(_)), "{accs:?}");
            assert_eq!(accs.get(1), acc);
            accs.set(0, acc.clone());
            assert_eq!(accs.take(0), acc);
            assert_eq!(accs.len(), 2);
        }
        assert_eq!(size_of::<u64>() + size_of::<(f64, u64)>(), 24);
    }

    #[test]
    fn another_kind_turns_the_column_mixed_and_keeps_every_value() {
        let mut accs = Accs::default();
        accs.push(Acc::Count(1));
        accs.push(Acc::Count(2));
        accs.set(1, Acc::Bytes(b"b"[..].into()));
        accs.push(Acc::Sum(0.5));
        assert!(matches!(accs, Accs::Mixed(_)));
        assert_eq!(accs.get(0), Acc::Count(1));
        assert_eq!(accs.bytes(1), b"b");
        assert_eq!(accs.get(2), Acc::Sum(0.5));
    }
}
