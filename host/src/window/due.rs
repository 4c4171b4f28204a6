//! The order of a firing: the windows due at one timer, sorted by their keys' bytes, then
//! start and end, so results come out in the same order in every run and after a restore
//! (key ids are reassigned; bytes are not).
//!
//! Invariants:
//! - [`DueList::sorted`] returns each slot once, in [`Due::order`]; how it sorts (by
//!   comparison, or by radix on the key prefixes for a firing of hundreds to a quarter
//!   of a million windows) never changes the order.
//! - The list's buffers are kept between firings up to [`KEPT_DUE_BYTES`] each.

use super::table::{Keys, Windows};

/// How much of each of the firing list's buffers is kept between firings (a firing
/// larger than this grows it again; kept small, as it is held while windows are open).
const KEPT_DUE_BYTES: usize = 256 << 10;

/// Firings of at least this many windows are sorted by radix on the key prefixes; the
/// passes over the list cost more than comparing below it.
const RADIX_MIN: usize = 256;

/// Firings of more windows than this are sorted by comparison, in place. Up to it, a
/// radix sort's scratch space (as large as the list, 24 bytes a window) is at most 6 MiB,
/// and a tumbling firing of ~100k keys (the many-key benchmarks) is sorted by radix;
/// above it, a firing of a million windows would hold tens of MiB more for a sort that
/// is a small part of it.
const RADIX_MAX: usize = 1 << 18;

/// A window due at a timer, with what sorting it by key needs: 24 bytes (its window is
/// read from its slot).
#[derive(Debug, Clone, Copy)]
pub(super) struct Due {
    /// The key's first 16 bytes, zero-padded, as two numbers: ordering these orders the
    /// keys by their bytes, except between keys that tie here (compared in full).
    prefix: (u64, u64),
    /// The window's slot.
    pub slot: u32,
    /// The key's id.
    pub key: u32,
}

impl Due {
    /// The window in `slot` of the key `key`, whose bytes are `key_bytes`.
    pub fn new(key_bytes: &[u8], slot: u32, key: u32) -> Self {
        let mut prefix = [0u8; 16];
        let n = key_bytes.len().min(16);
        prefix[..n].copy_from_slice(&key_bytes[..n]);
        let (high, low) = prefix.split_at(8);
        Self {
            prefix: (
                u64::from_be_bytes(high.try_into().expect("8 bytes")),
                u64::from_be_bytes(low.try_into().expect("8 bytes")),
            ),
            slot,
            key,
        }
    }

    /// The firing order: by key bytes, then start and end.
    fn order(&self, other: &Due, keys: &Keys, windows: &Windows) -> std::cmp::Ordering {
        let bounds = |due: &Due| windows.held(due.slot).map(|(_, w)| (w.start, w.end));
        self.prefix
            .cmp(&other.prefix)
            .then_with(|| keys.bytes(self.key).cmp(keys.bytes(other.key)))
            .then_with(|| bounds(self).cmp(&bounds(other)))
    }
}

/// The firing list and the scratch space its sort needs, kept between firings: at tens of
/// thousands of windows they are megabytes, allocated once rather than per firing.
#[derive(Debug, Default)]
pub(super) struct DueList {
    due: Vec<Due>,
    scratch: Vec<Due>,
}

impl DueList {
    /// The windows `due`, in firing order ([`Due::order`]), each slot once.
    ///
    /// By the prefixes alone first (a radix sort on the bytes that differ, or a plain
    /// compare of two numbers for a small firing), then each run of equal prefixes (keys
    /// that share their first 16 bytes, or one key's several windows) in full.
    pub fn sorted(
        &mut self,
        due: impl Iterator<Item = Due>,
        keys: &Keys,
        windows: &Windows,
    ) -> &[Due] {
        self.due.clear();
        self.due.extend(due);
        if (RADIX_MIN..=RADIX_MAX).contains(&self.due.len()) {
            radix_sort_by_prefix(&mut self.due, &mut self.scratch);
        } else {
            self.due.sort_unstable_by_key(|d| d.prefix);
        }
        for tied in self.due.chunk_by_mut(|a, b| a.prefix == b.prefix) {
            if tied.len() > 1 {
                tied.sort_unstable_by(|a, b| a.order(b, keys, windows));
            }
        }
        self.due.dedup_by_key(|d| d.slot);
        &self.due
    }

    /// Empties the list, keeping up to [`KEPT_DUE_BYTES`] of each buffer: a rare firing
    /// of a million windows does not leave tens of MiB resident.
    pub fn clear(&mut self) {
        for list in [&mut self.due, &mut self.scratch] {
            list.clear();
            list.shrink_to(KEPT_DUE_BYTES / size_of::<Due>());
        }
    }
}

/// Byte `i` (0 first) of a key prefix.
fn prefix_byte(prefix: (u64, u64), i: usize) -> usize {
    let half = if i < 8 { prefix.0 } else { prefix.1 };
    (half >> (56 - 8 * (i % 8))) as usize & 0xff
}

/// Sorts `due` by prefix, stably: one pass counts each prefix byte that is not the same
/// in all (keys such as `user-123` share most of theirs), then one pass per such byte,
/// last first, moves the windows between `due` and `scratch` by it.
fn radix_sort_by_prefix(due: &mut Vec<Due>, scratch: &mut Vec<Due>) {
    let (mut all, mut any) = ((u64::MAX, u64::MAX), (0, 0));
    for d in due.iter() {
        all = (all.0 & d.prefix.0, all.1 & d.prefix.1);
        any = (any.0 | d.prefix.0, any.1 | d.prefix.1);
    }
    let differing = (all.0 ^ any.0, all.1 ^ any.1);
    let bytes: Vec<usize> = (0..16)
        .filter(|&i| prefix_byte(differing, i) != 0)
        .collect();
    let mut counts = vec![[0u32; 256]; bytes.len()];
    for d in due.iter() {
        for (count, &i) in counts.iter_mut().zip(&bytes) {
            count[prefix_byte(d.prefix, i)] += 1;
        }
    }
    scratch.clear();
    scratch.resize(due.len(), due[0]);
    for (count, &i) in counts.iter().zip(&bytes).rev() {
        let mut next = [0u32; 256];
        let mut at = 0;
        for (next, &n) in next.iter_mut().zip(count) {
            *next = at;
            at += n;
        }
        for d in due.iter() {
            let bucket = &mut next[prefix_byte(d.prefix, i)];
            scratch[*bucket as usize] = *d;
            *bucket += 1;
        }
        std::mem::swap(due, scratch);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::aggregate::Acc;
    use super::super::assigner::TimeWindow;
    use super::*;

    /// Keys with shared prefixes around 16 bytes, where the quick comparison ties.
    fn keys(count: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Vec<u8>>> {
        prop::collection::vec(
            (
                12..18usize,
                prop::collection::vec(prop::sample::select(vec![0u8, 1, b'a', 0xff]), 0..4),
            )
                .prop_map(|(shared, suffix)| [vec![b'a'; shared], suffix].concat()),
            count,
        )
    }

    /// The keys of a firing of one window per key given (a key given twice has two), in
    /// the order it fires them.
    fn fired(keys: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut table = Keys::default();
        let mut windows = Windows::on_grid(10);
        let due: Vec<Due> = keys
            .iter()
            .enumerate()
            .map(|(i, bytes)| {
                let key = table.intern(bytes);
                let window = TimeWindow {
                    start: 10 * i as i64,
                    end: 10 * i as i64 + 10,
                };
                let slot = windows.insert(key, window, Acc::Count(0));
                Due::new(bytes, slot, key)
            })
            .collect();
        let mut list = DueList::default();
        let sorted = list.sorted(due.into_iter(), &table, &windows);
        sorted.iter().map(|d| table.bytes(d.key).to_vec()).collect()
    }

    #[test]
    fn keys_that_tie_on_their_first_16_bytes_are_ordered_by_the_rest() {
        let (low, high) = (
            [vec![b'a'; 16], vec![0]].concat(),
            [vec![b'a'; 16], vec![1]].concat(),
        );
        assert_eq!(fired(&[high.clone(), low.clone()]), [low, high]);
    }

    proptest! {
        /// Windows due together come out in the order of their keys' bytes, whether the
        /// firing is small (compared) or large (radix).
        #[test]
        fn due_windows_are_ordered_by_key_bytes(
            keys in prop_oneof![keys(1..30), keys(RADIX_MIN..RADIX_MIN + 100)]
        ) {
            let mut expected = keys.clone();
            expected.sort();
            prop_assert_eq!(fired(&keys), expected);
        }

        /// The radix sort orders by prefix as a stable comparison sort does.
        #[test]
        fn the_radix_sort_is_a_stable_sort_by_prefix(
            prefixes in prop::collection::vec(
                (prop::sample::select(vec![0u64, 7, 0x0100, u64::MAX, 0x7573_6572_2d31_3233]),
                 prop::sample::select(vec![0u64, 1, 0xff00_0000_0000_0000, 0x3400_0000_0000_0000])),
                1..600,
            )
        ) {
            let mut due: Vec<Due> = prefixes
                .iter()
                .enumerate()
                .map(|(i, &prefix)| Due { prefix, slot: i as u32, key: 0 })
                .collect();
            let mut expected = due.clone();
            expected.sort_by_key(|d| d.prefix);
            radix_sort_by_prefix(&mut due, &mut Vec::new());
            let order = |list: &[Due]| list.iter().map(|d| (d.prefix, d.slot)).collect::<Vec<_>>();
            prop_assert_eq!(order(&due), order(&expected));
        }
    }
}
