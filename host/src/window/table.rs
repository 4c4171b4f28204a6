//! The window operator's state, laid out to be small and to touch few cache lines per
//! event: keys interned into one byte arena, and open windows in slots (one accumulator
//! each) found through a hash index of 4-byte slot numbers.
//!
//! Invariants:
//! - A key id is live while the key has an open window; its bytes are in the arena at its
//!   span, and the index finds it by its bytes. Ids and arena space of released keys are
//!   reused (the arena is compacted once mostly garbage).
//! - A slot is live while its window is open: `slots[slot]` names the window and the index
//!   finds the slot by (key, start), which identify an open window (a key's windows of
//!   one kind never share a start: fixed-size windows differ in start, sessions of a key
//!   never overlap).

use std::hash::BuildHasher;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

use super::accs::Accs;
use super::aggregate::Acc;
use super::assigner::TimeWindow;

/// Where a key's bytes are in the arena, and how many windows it holds open.
#[derive(Debug, Clone, Copy, Default)]
struct KeySpan {
    offset: u32,
    len: u32,
    open: u32,
}

/// Keys interned to small ids, so windows hold 4 bytes instead of the key. A key is
/// forgotten (its id reused) once it has no open window, so a stream of ever-new keys
/// does not grow the table without bound.
#[derive(Debug, Default)]
pub struct Keys {
    index: HashTable<u32>,
    arena: Vec<u8>,
    spans: Vec<KeySpan>,
    free: Vec<u32>,
    /// Arena bytes of forgotten keys.
    garbage: usize,
}

fn hash_of<T: std::hash::Hash>(value: T) -> u64 {
    FxBuildHasher.hash_one(value)
}

fn span_bytes(arena: &[u8], span: KeySpan) -> &[u8] {
    &arena[span.offset as usize..(span.offset + span.len) as usize]
}

impl Keys {
    /// The id of `key`, interning it if new.
    pub fn intern(&mut self, key: &[u8]) -> u32 {
        let hash = hash_of(key);
        let (arena, spans) = (&self.arena, &self.spans);
        if let Some(&id) = self
            .index
            .find(hash, |&id| span_bytes(arena, spans[id as usize]) == key)
        {
            return id;
        }
        if self.arena.len() + key.len() > u32::MAX as usize {
            self.compact();
        }
        let span = KeySpan {
            offset: u32::try_from(self.arena.len()).expect("over 4 GiB of distinct keys"),
            len: key.len() as u32,
            open: 0,
        };
        self.arena.extend_from_slice(key);
        let id = match self.free.pop() {
            Some(id) => {
                self.spans[id as usize] = span;
                id
            }
            None => {
                self.spans.push(span);
                u32::try_from(self.spans.len() - 1).expect("more than 4 billion keys")
            }
        };
        let (arena, spans) = (&self.arena, &self.spans);
        self.index.insert_unique(hash, id, |&id| {
            hash_of(span_bytes(arena, spans[id as usize]))
        });
        id
    }

    /// The bytes of key `id`.
    pub fn bytes(&self, id: u32) -> &[u8] {
        span_bytes(&self.arena, self.spans[id as usize])
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Windows key `id` holds open.
    pub fn open(&self, id: u32) -> u32 {
        self.spans[id as usize].open
    }

    /// Key `id` opened a window.
    pub fn window_opened(&mut self, id: u32) {
        self.spans[id as usize].open += 1;
    }

    /// Key `id` closed a window.
    pub fn window_closed(&mut self, id: u32) {
        self.spans[id as usize].open -= 1;
    }

    /// Forgets a key that has no open window.
    pub fn release_if_unused(&mut self, id: u32) {
        let span = self.spans[id as usize];
        if span.open > 0 {
            return;
        }
        let hash = hash_of(span_bytes(&self.arena, span));
        if let Ok(entry) = self.index.find_entry(hash, |&other| other == id) {
            entry.remove();
        }
        self.garbage += span.len as usize;
        self.free.push(id);
        if self.garbage > 1 << 20 && self.garbage * 2 > self.arena.len() {
            self.compact();
        }
    }

    /// Rewrites the arena with only the live keys' bytes.
    fn compact(&mut self) {
        let mut arena = Vec::with_capacity(self.arena.len() - self.garbage);
        for &id in self.index.iter() {
            let span = &mut self.spans[id as usize];
            let bytes = span_bytes(&self.arena, *span);
            span.offset = arena.len() as u32;
            arena.extend_from_slice(bytes);
        }
        self.arena = arena;
        self.garbage = 0;
    }
}

/// Window lengths at or above this are kept in [`Windows::long_ends`] (a session can
/// outgrow 49 days; fixed windows seldom do).
const LONG: u32 = u32::MAX;

/// The window a slot holds: 12 bytes (its length is in [`Lengths`]).
#[derive(Debug, Clone, Copy)]
#[repr(C, packed(4))]
struct SlotWindow {
    start: i64,
    key: u32,
}

impl SlotWindow {
    /// Whether it holds the window of `key` starting at `start`.
    fn is(self, key: u32, start: i64) -> bool {
        let (held_key, held_start) = (self.key, self.start);
        held_key == key && held_start == start
    }

    /// The key it holds ([`FREE_KEY`] when free).
    fn key(self) -> u32 {
        self.key
    }
}

/// The lengths (`end - start`, or [`LONG`] with the end in [`Windows::long_ends`]) of the
/// slots' windows: one for all while every window has the same (fixed-size windows), or
/// one per slot once they differ (sessions).
#[derive(Debug, Clone, Default)]
enum Lengths {
    /// No window yet.
    #[default]
    None,
    /// Every slot's window has this length.
    Same(u32),
    /// Each slot's own.
    PerSlot(Vec<u32>),
}

impl Lengths {
    fn of(&self, slot: u32) -> u32 {
        match self {
            Self::None => LONG,
            Self::Same(length) => *length,
            Self::PerSlot(lengths) => lengths[slot as usize],
        }
    }

    /// Records that `slot` (of `slots` slots, it included) holds a window of `length`.
    fn set(&mut self, slot: u32, slots: usize, length: u32) {
        match self {
            Self::None => *self = Self::Same(length),
            Self::Same(same) if *same == length => {}
            Self::Same(same) => {
                let mut lengths = vec![*same; slots];
                lengths[slot as usize] = length;
                *self = Self::PerSlot(lengths);
            }
            Self::PerSlot(lengths) => {
                lengths.resize(slots, LONG);
                lengths[slot as usize] = length;
            }
        }
    }
}

/// A slot no window holds.
const FREE_KEY: u32 = u32::MAX;

/// Open windows of every key, each in a slot with its accumulator.
#[derive(Debug, Default)]
pub struct Windows {
    index: HashTable<u32>,
    slots: Vec<SlotWindow>,
    lengths: Lengths,
    /// The accumulator of each slot (the aggregate folds into these by slot).
    pub accs: Accs,
    free: Vec<u32>,
    long_ends: rustc_hash::FxHashMap<u32, i64>,
}

impl Windows {
    /// The slot of `window` of `key`, if open.
    pub fn get(&self, key: u32, window: TimeWindow) -> Option<u32> {
        let slots = &self.slots;
        let &slot = self.index.find(hash_of((key, window.start)), |&s| {
            let held = slots[s as usize];
            held.is(key, window.start)
        })?;
        (self.window(slot).1 == window).then_some(slot)
    }

    /// Opens `window` of `key` with accumulator `acc`; returns its slot.
    pub fn insert(&mut self, key: u32, window: TimeWindow, acc: Acc) -> u32 {
        let length = window
            .end
            .checked_sub(window.start)
            .and_then(|l| u32::try_from(l).ok())
            .filter(|&l| l < LONG)
            .unwrap_or(LONG);
        let held = SlotWindow {
            start: window.start,
            key,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = held;
                self.accs.set(slot, acc);
                slot
            }
            None => {
                self.slots.push(held);
                self.accs.push(acc);
                u32::try_from(self.slots.len() - 1).expect("more than 4 billion open windows")
            }
        };
        self.lengths.set(slot, self.slots.len(), length);
        if length == LONG {
            self.long_ends.insert(slot, window.end);
        }
        let slots = &self.slots;
        self.index
            .insert_unique(hash_of((key, window.start)), slot, |&s| {
                let held = slots[s as usize];
                hash_of((held.key, held.start))
            });
        slot
    }

    /// Closes `window` of `key`; returns its slot and accumulator.
    pub fn remove(&mut self, key: u32, window: TimeWindow) -> Option<(u32, Acc)> {
        let slot = self.get(key, window)?;
        let entry = self
            .index
            .find_entry(hash_of((key, window.start)), |&s| s == slot)
            .ok()?;
        entry.remove();
        self.slots[slot as usize].key = FREE_KEY;
        self.long_ends.remove(&slot);
        self.free.push(slot);
        Some((slot, self.accs.take(slot)))
    }

    /// The key and window slot `slot` holds, if it holds one.
    pub fn held(&self, slot: u32) -> Option<(u32, TimeWindow)> {
        (self.slots[slot as usize].key() != FREE_KEY).then(|| self.window(slot))
    }

    fn window(&self, slot: u32) -> (u32, TimeWindow) {
        let held = self.slots[slot as usize];
        let end = match self.lengths.of(slot) {
            LONG => self.long_ends[&slot],
            length => held.start + i64::from(length),
        };
        (
            held.key,
            TimeWindow {
                start: held.start,
                end,
            },
        )
    }

    /// Every open window: (slot, key, window), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32, TimeWindow)> + '_ {
        self.index.iter().map(|&slot| {
            let (key, window) = self.window(slot);
            (slot, key, window)
        })
    }

    /// Number of open windows.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Number of slots, open or free (the bound of slot numbers).
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_takes_a_12_byte_slot_and_an_8_byte_count() {
        assert_eq!(size_of::<SlotWindow>(), 12);
        let mut windows = Windows::default();
        windows.insert(1, TimeWindow { start: 0, end: 10 }, Acc::Count(0));
        windows.insert(2, TimeWindow { start: 10, end: 20 }, Acc::Count(0));
        assert!(matches!(windows.accs, Accs::Count(_)), "{:?}", windows.accs);
        assert!(
            matches!(windows.lengths, Lengths::Same(10)),
            "fixed-size windows keep one length: {:?}",
            windows.lengths
        );
    }

    #[test]
    fn keys_are_reused_and_the_arena_compacts() {
        let mut keys = Keys::default();
        let a = keys.intern(b"alpha");
        assert_eq!(keys.intern(b"alpha"), a);
        let b = keys.intern(b"beta");
        assert_ne!(a, b);
        keys.window_opened(b);
        keys.release_if_unused(a);
        assert_eq!(keys.len(), 1);
        // Churn through far more key bytes than stay live: the arena stays small.
        for i in 0..200_000u32 {
            let id = keys.intern(format!("key-{i:020}").as_bytes());
            keys.release_if_unused(id);
        }
        assert_eq!(keys.len(), 1);
        assert_eq!(keys.bytes(b), b"beta");
        assert!(keys.arena.len() < 3 << 20, "{}", keys.arena.len());
        assert_eq!(keys.intern(b"beta"), b);
    }

    #[test]
    fn windows_are_found_by_key_start_and_end_and_slots_are_reused() {
        let mut windows = Windows::default();
        let w = |start, end| TimeWindow { start, end };
        let s1 = windows.insert(1, w(0, 10), Acc::Count(1));
        let s2 = windows.insert(2, w(0, 10), Acc::Count(2));
        let long = windows.insert(1, w(10, 10 + (1 << 40)), Acc::Count(3));
        assert!(matches!(windows.lengths, Lengths::PerSlot(_)));
        assert_eq!(windows.get(1, w(0, 10)), Some(s1));
        assert_eq!(windows.get(1, w(0, 11)), None, "same start, other end");
        assert_eq!(windows.get(1, w(10, 10 + (1 << 40))), Some(long));
        assert_eq!(windows.held(long), Some((1, w(10, 10 + (1 << 40)))));
        assert_eq!(windows.remove(1, w(0, 10)), Some((s1, Acc::Count(1))));
        assert_eq!(windows.held(s1), None);
        assert_eq!(windows.get(1, w(0, 10)), None);
        let s3 = windows.insert(3, w(20, 30), Acc::Count(4));
        assert_eq!(s3, s1, "the freed slot is reused");
        assert_eq!(windows.len(), 3);
        let mut all: Vec<_> = windows.iter().map(|(s, k, _)| (s, k)).collect();
        all.sort();
        assert_eq!(all, vec![(s1, 3), (s2, 2), (long, 1)]);
    }
}
