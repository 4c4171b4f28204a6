//! The window operator's state, laid out to be small and to touch few cache lines per
//! event: keys interned into one byte arena, and open windows in slots (one accumulator
//! each) found through a hash index of 4-byte slot numbers.
//!
//! Invariants:
//! - A key's id is the offset of its entry in the arena: the number of windows it holds
//!   open (4 bytes), its length (LEB128) and its bytes. An id is valid from its
//!   interning until the key is released with no open window; the index finds it by its
//!   bytes. The entries of released keys are reused by keys of their size. Ids change
//!   only when the arena is compacted, which the holder of the ids asks for (between
//!   batches) and follows with [`KeyRemap`].
//! - A slot is live while its window is open: `slots[slot]` names the window and the index
//!   finds the slot by (key, start), which identify an open window (a key's windows of
//!   one kind never share a start: fixed-size windows differ in start, sessions of a key
//!   never overlap). Fixed-size windows are indexed per start (a pane), so a timer's
//!   windows, which close together, leave with their pane's table; a closed window may
//!   stay in that table until the next settle, and none opens before it.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

use super::accs::Accs;
use super::aggregate::Acc;
use super::assigner::TimeWindow;
use super::prefetch::prefetch;
use super::slots::{Slots, FREE_KEY};

/// The end of a free list.
const NONE: u32 = u32::MAX;

/// Bytes of an entry's open-window count (a free entry holds the next free entry there).
const OPEN: usize = 4;

/// Keys interned to small ids, so windows hold 4 bytes instead of the key. A key is
/// forgotten (its entry reused) once it has no open window, so a stream of ever-new keys
/// does not grow the table without bound.
///
/// A key's id is where its entry starts in the arena, so finding a key by its bytes
/// reads its entry directly, with no table between. Released entries are chained through
/// themselves (each free entry starts with the offset of the next free entry of its
/// size), so reusing them costs no memory of its own: keys that come back (the usual
/// case) refill the space of those that left.
#[derive(Debug, Default)]
pub struct Keys {
    index: HashTable<u32>,
    arena: Vec<u8>,
    /// Entry size (count, length prefix and bytes) → the first free entry of that size.
    free_chunks: rustc_hash::FxHashMap<u32, u32>,
    /// Arena bytes of forgotten keys (free entries).
    garbage: usize,
}

/// How ids changed in a compaction (see [`Keys::compact`]).
#[derive(Debug)]
pub struct KeyRemap {
    /// The held keys' old ids, ascending, and their new ids, in the same order.
    old: Vec<u32>,
    new: Vec<u32>,
}

impl KeyRemap {
    /// The new id of a key held at the compaction, by its old id.
    pub fn new_id(&self, old: u32) -> u32 {
        let at = self
            .old
            .binary_search(&old)
            .expect("only held keys' ids are remapped");
        self.new[at]
    }
}

fn hash_of<T: std::hash::Hash>(value: T) -> u64 {
    FxBuildHasher.hash_one(value)
}

/// The length prefix of a key of `len` bytes, and how many bytes of it are used.
fn length_prefix(mut len: usize) -> ([u8; 5], usize) {
    let mut prefix = [0u8; 5];
    let mut n = 0;
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            prefix[n] = byte;
            return (prefix, n + 1);
        }
        prefix[n] = byte | 0x80;
        n += 1;
    }
}

/// The bytes of the key whose entry starts at `id`.
fn key_at(arena: &[u8], id: u32) -> &[u8] {
    let mut at = id as usize + OPEN;
    let mut len = 0usize;
    let mut shift = 0;
    loop {
        let byte = arena[at];
        at += 1;
        len |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return &arena[at..at + len];
        }
        shift += 7;
    }
}

/// Arena bytes a key's entry takes: its count, its length prefix and its bytes.
fn entry_size(key: &[u8]) -> usize {
    OPEN + length_prefix(key.len()).1 + key.len()
}

/// The 4-byte number at `at` of the arena.
fn read_u32(arena: &[u8], at: u32) -> u32 {
    let at = at as usize;
    u32::from_le_bytes(arena[at..at + 4].try_into().expect("4 bytes"))
}

fn write_u32(arena: &mut [u8], at: u32, value: u32) {
    let at = at as usize;
    arena[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

impl Keys {
    /// The id of `key`, interning it if new.
    pub fn intern(&mut self, key: &[u8]) -> u32 {
        let hash = hash_of(key);
        let arena = &self.arena;
        if let Some(&id) = self.index.find(hash, |&id| key_at(arena, id) == key) {
            return id;
        }
        let id = self.store(key);
        let arena = &self.arena;
        self.index
            .insert_unique(hash, id, |&id| hash_of(key_at(arena, id)));
        id
    }

    /// Writes an entry for `key` (into a free entry of its size when there is one), with
    /// no open window; returns its id.
    fn store(&mut self, key: &[u8]) -> u32 {
        let (prefix, prefix_len) = length_prefix(key.len());
        let size = OPEN + prefix_len + key.len();
        let at = match self.free_chunks.get_mut(&(size as u32)) {
            Some(head) => {
                let at = *head;
                let next = read_u32(&self.arena, at);
                if next == NONE {
                    self.free_chunks.remove(&(size as u32));
                } else {
                    *head = next;
                    // The next key of this size reads it: a free entry is anywhere in
                    // the arena, seldom in the cache, and the read would wait on memory.
                    prefetch(&self.arena[next as usize]);
                }
                self.garbage -= size;
                at as usize
            }
            None => {
                let at = self.arena.len();
                assert!(
                    at + size < NONE as usize,
                    "the keys with open windows take over 4 GiB"
                );
                self.arena.resize(at + size, 0);
                at
            }
        };
        self.arena[at..at + OPEN].fill(0);
        self.arena[at + OPEN..at + OPEN + prefix_len].copy_from_slice(&prefix[..prefix_len]);
        self.arena[at + OPEN + prefix_len..at + size].copy_from_slice(key);
        at as u32
    }

    /// The bytes of key `id`.
    pub fn bytes(&self, id: u32) -> &[u8] {
        key_at(&self.arena, id)
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Windows key `id` holds open.
    pub fn open(&self, id: u32) -> u32 {
        read_u32(&self.arena, id)
    }

    /// Key `id` opened a window.
    pub fn window_opened(&mut self, id: u32) {
        let open = self.open(id) + 1;
        write_u32(&mut self.arena, id, open);
    }

    /// Key `id` closed a window.
    pub fn window_closed(&mut self, id: u32) {
        let open = self.open(id) - 1;
        write_u32(&mut self.arena, id, open);
    }

    /// Forgets a key that has no open window.
    pub fn release_if_unused(&mut self, id: u32) {
        if self.open(id) > 0 {
            return;
        }
        let key = key_at(&self.arena, id);
        let size = entry_size(key);
        if let Ok(entry) = self.index.find_entry(hash_of(key), |&other| other == id) {
            entry.remove();
        }
        let next = self.free_chunks.insert(size as u32, id).unwrap_or(NONE);
        write_u32(&mut self.arena, id, next);
        self.garbage += size;
    }

    /// Bytes of the arena.
    #[cfg(test)]
    pub fn arena_len(&self) -> usize {
        self.arena.len()
    }

    /// Whether the arena is mostly forgotten keys' entries, and worth compacting.
    pub fn wants_compaction(&self) -> bool {
        self.garbage > 1 << 20 && self.garbage * 2 > self.arena.len()
    }

    /// Rewrites the arena with only the held keys' entries, in the same order. Their ids
    /// change: the caller updates every id it holds with the returned remap.
    pub fn compact(&mut self) -> KeyRemap {
        let mut old: Vec<u32> = self.index.iter().copied().collect();
        old.sort_unstable();
        let mut arena = Vec::with_capacity(self.arena.len() - self.garbage);
        let new: Vec<u32> = old
            .iter()
            .map(|&id| {
                let at = u32::try_from(arena.len()).expect("smaller than before");
                let size = entry_size(key_at(&self.arena, id));
                arena.extend_from_slice(&self.arena[id as usize..id as usize + size]);
                at
            })
            .collect();
        let remap = KeyRemap { old, new };
        // A key keeps its hash (its bytes), so the index keeps its layout.
        for id in self.index.iter_mut() {
            *id = remap.new_id(*id);
        }
        self.arena = arena;
        self.free_chunks.clear();
        self.garbage = 0;
        remap
    }
}

/// Window lengths at or above this are kept in [`Windows::long_ends`] (a session can
/// outgrow 49 days; fixed windows seldom do).
const LONG: u32 = u32::MAX;

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

/// The end of the window in `slot`.
fn end_of(
    slots: &Slots,
    lengths: &Lengths,
    long_ends: &rustc_hash::FxHashMap<u32, i64>,
    slot: u32,
) -> i64 {
    match lengths.of(slot) {
        LONG => long_ends[&slot],
        length => slots.get(slot).1 + i64::from(length),
    }
}

/// Whether `slot` holds `window` of `key` (the index's match for a lookup).
fn holds(
    slots: &Slots,
    lengths: &Lengths,
    long_ends: &rustc_hash::FxHashMap<u32, i64>,
    slot: u32,
    key: u32,
    window: TimeWindow,
) -> bool {
    slots.is(slot, key, window.start) && end_of(slots, lengths, long_ends, slot) == window.end
}

/// How open windows are found by (key, window): hash tables of slot numbers.
#[derive(Debug)]
enum Index {
    /// One table over every window, by key and start: windows of any shape (sessions).
    Whole(HashTable<u32>),
    /// One table per window start, by key: fixed-size windows. The windows of one start
    /// share their end, so they close together (at the same timer), and their table is
    /// then dropped whole instead of emptied window by window.
    Panes(Panes),
}

/// The panes of fixed-size windows, by start: few at a time (a tumbling window's one or
/// two, a sliding window's size / slide), so kept in a vector sorted by start, where a
/// lookup is a compare or two rather than a hash and a probe.
#[derive(Debug, Default)]
struct Panes(Vec<Pane>);

impl Panes {
    fn position(&self, start: i64) -> Result<usize, usize> {
        self.0.binary_search_by_key(&start, |pane| pane.start)
    }

    fn get(&self, start: i64) -> Option<&Pane> {
        self.position(start).ok().map(|at| &self.0[at])
    }

    fn get_mut(&mut self, start: i64) -> Option<&mut Pane> {
        self.position(start).ok().map(|at| &mut self.0[at])
    }

    /// The pane of `start`, opened with `table` (empty) if there is none.
    fn open(&mut self, start: i64, table: impl FnOnce() -> HashTable<u32>) -> &mut Pane {
        let at = self.position(start).unwrap_or_else(|at| {
            let table = table();
            self.0.insert(
                at,
                Pane {
                    start,
                    table,
                    open: 0,
                },
            );
            at
        });
        &mut self.0[at]
    }

    /// Drops the pane of `start` if none of its windows is open, keeping its table,
    /// emptied, in `spare` when that is the larger.
    fn drop_if_closed(&mut self, start: i64, spare: &mut HashTable<u32>) {
        let Ok(at) = self.position(start) else {
            return;
        };
        if self.0[at].open == 0 {
            let mut table = self.0.remove(at).table;
            if table.capacity() > spare.capacity() {
                table.clear();
                *spare = table;
            }
        }
    }
}

/// The windows of one start (fixed-size windows).
#[derive(Debug)]
struct Pane {
    start: i64,
    table: HashTable<u32>,
    /// Windows of the table still open (it may also hold windows closed since the last
    /// [`Windows::settle`]).
    open: usize,
}

/// Open windows of every key, each in a slot with its accumulator. Free slots are
/// chained through themselves (see [`Slots::free`]), so freeing a million windows at
/// once takes no memory of its own.
///
/// Windows closed by [`Windows::close`] may stay in their pane's table until
/// [`Windows::settle`]; no window opens in between.
#[derive(Debug)]
pub struct Windows {
    index: Index,
    slots: Slots,
    lengths: Lengths,
    /// The accumulator of each slot (the aggregate folds into these by slot).
    pub accs: Accs,
    /// The first free slot.
    free: u32,
    long_ends: rustc_hash::FxHashMap<u32, i64>,
    /// Starts of the panes [`Windows::close`] closed windows of since the last settle.
    closing: Vec<i64>,
    /// The emptied table of the last pane that closed, for the next pane to open (panes
    /// come and go at the same size, so a new one then neither grows step by step nor
    /// adds its table to the old one's freed memory).
    spare: HashTable<u32>,
}

impl Default for Windows {
    fn default() -> Self {
        Self::with(Slots::default(), Index::Whole(HashTable::new()))
    }
}

impl Windows {
    /// Fixed-size windows, which start on a grid of `step` ms (their slide): their
    /// slots take 8 bytes rather than 12, and each start's windows are indexed apart.
    pub fn on_grid(step: i64) -> Self {
        Self::with(Slots::on_grid(step), Index::Panes(Default::default()))
    }

    fn with(slots: Slots, index: Index) -> Self {
        Self {
            index,
            slots,
            lengths: Lengths::default(),
            accs: Accs::default(),
            free: NONE,
            long_ends: Default::default(),
            closing: Vec::new(),
            spare: HashTable::new(),
        }
    }

    /// The slot of `window` of `key`, if open.
    pub fn get(&self, key: u32, window: TimeWindow) -> Option<u32> {
        let (slots, lengths, long_ends) = (&self.slots, &self.lengths, &self.long_ends);
        let held = |&s: &u32| holds(slots, lengths, long_ends, s, key, window);
        // One probe for both kinds of index, so it is inlined once.
        let (table, hash) = match &self.index {
            Index::Whole(table) => (table, hash_of((key, window.start))),
            Index::Panes(panes) => (&panes.get(window.start)?.table, hash_of(key)),
        };
        table.find(hash, held).copied()
    }

    /// Opens `window` of `key` with accumulator `acc`; returns its slot.
    pub fn insert(&mut self, key: u32, window: TimeWindow, acc: Acc) -> u32 {
        debug_assert!(self.closing.is_empty(), "a window opened before a settle");
        let length = window
            .end
            .checked_sub(window.start)
            .and_then(|l| u32::try_from(l).ok())
            .filter(|&l| l < LONG)
            .unwrap_or(LONG);
        let slot = if self.free != NONE {
            let slot = self.free;
            self.free = self.slots.next_free(slot);
            if self.free != NONE {
                // The next window opened takes it (see `Keys::store`).
                self.prefetch(self.free);
            }
            self.slots.set(slot, key, window.start);
            self.accs.set(slot, acc);
            slot
        } else {
            self.slots.push(key, window.start);
            self.accs.push(acc);
            u32::try_from(self.slots.len() - 1).expect("more than 4 billion open windows")
        };
        self.lengths.set(slot, self.slots.len(), length);
        if length == LONG {
            self.long_ends.insert(slot, window.end);
        }
        self.index_slot(slot);
        slot
    }

    /// Brings `slot` and its accumulator into the cache ahead of their use.
    fn prefetch(&self, slot: u32) {
        self.slots.prefetch(slot);
        self.accs.prefetch(slot);
    }

    /// Enters the window in `slot` in the index.
    fn index_slot(&mut self, slot: u32) {
        let slots = &self.slots;
        let (key, start) = slots.get(slot);
        match &mut self.index {
            Index::Whole(table) => {
                table.insert_unique(hash_of((key, start)), slot, |&s| hash_of(slots.get(s)));
            }
            Index::Panes(panes) => {
                let pane = panes.open(start, || std::mem::take(&mut self.spare));
                pane.table
                    .insert_unique(hash_of(key), slot, |&s| hash_of(slots.get(s).0));
                pane.open += 1;
            }
        }
    }

    /// Closes `window` of `key`; returns its slot and accumulator.
    pub fn remove(&mut self, key: u32, window: TimeWindow) -> Option<(u32, Acc)> {
        let (slots, lengths, long_ends) = (&self.slots, &self.lengths, &self.long_ends);
        let held = |&s: &u32| holds(slots, lengths, long_ends, s, key, window);
        let slot = match &mut self.index {
            Index::Whole(table) => {
                let entry = table.find_entry(hash_of((key, window.start)), held).ok()?;
                entry.remove().0
            }
            Index::Panes(panes) => {
                let pane = panes.get_mut(window.start)?;
                let slot = pane.table.find_entry(hash_of(key), held).ok()?.remove().0;
                pane.open -= 1;
                panes.drop_if_closed(window.start, &mut self.spare);
                slot
            }
        };
        Some((slot, self.free_slot(slot)))
    }

    /// Closes the window in `slot` (open), dropping its accumulator. A fixed-size window
    /// stays in its pane's table until [`Windows::settle`], which drops the table once
    /// all of its windows are closed.
    pub fn close(&mut self, slot: u32) {
        let (key, window) = self.window(slot);
        match &mut self.index {
            Index::Whole(_) => {
                self.remove(key, window);
            }
            Index::Panes(panes) => {
                if let Some(pane) = panes.get_mut(window.start) {
                    pane.open -= 1;
                }
                if self.closing.last() != Some(&window.start) {
                    self.closing.push(window.start);
                }
                self.free_slot(slot);
            }
        }
    }

    /// Takes closed windows out of their panes' tables: drops a pane's table whose
    /// windows are all closed (as at a timer of fixed-size windows), and otherwise keeps
    /// only the open windows in it.
    pub fn settle(&mut self) {
        let Index::Panes(panes) = &mut self.index else {
            return;
        };
        self.closing.sort_unstable();
        self.closing.dedup();
        for start in self.closing.drain(..) {
            panes.drop_if_closed(start, &mut self.spare);
            if let Some(pane) = panes.get_mut(start) {
                pane.table.retain(|&mut s| {
                    let (key, held_start) = self.slots.get(s);
                    key != FREE_KEY && held_start == start
                });
            }
        }
    }

    /// Frees `slot` (its window taken out of the index), returning its accumulator.
    fn free_slot(&mut self, slot: u32) -> Acc {
        self.slots.free(slot, self.free);
        self.long_ends.remove(&slot);
        self.free = slot;
        self.accs.take(slot)
    }

    /// The key and window slot `slot` holds, if it holds one.
    pub fn held(&self, slot: u32) -> Option<(u32, TimeWindow)> {
        (self.slots.get(slot).0 != FREE_KEY).then(|| self.window(slot))
    }

    fn window(&self, slot: u32) -> (u32, TimeWindow) {
        let (key, start) = self.slots.get(slot);
        let end = end_of(&self.slots, &self.lengths, &self.long_ends, slot);
        (key, TimeWindow { start, end })
    }

    /// Every open window: (slot, key, window), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32, TimeWindow)> + '_ {
        debug_assert!(self.closing.is_empty(), "windows listed before a settle");
        let slots: Box<dyn Iterator<Item = &u32>> = match &self.index {
            Index::Whole(table) => Box::new(table.iter()),
            Index::Panes(panes) => Box::new(panes.0.iter().flat_map(|pane| pane.table.iter())),
        };
        slots.map(|&slot| {
            let (key, window) = self.window(slot);
            (slot, key, window)
        })
    }

    /// Number of open windows.
    pub fn len(&self) -> usize {
        match &self.index {
            Index::Whole(table) => table.len(),
            Index::Panes(panes) => panes.0.iter().map(|pane| pane.open).sum(),
        }
    }

    /// Gives every open window its key's new id, after the keys were compacted.
    pub fn rekey(&mut self, remap: &KeyRemap) {
        debug_assert!(self.closing.is_empty(), "keys compacted before a settle");
        match &mut self.index {
            Index::Whole(table) => table.clear(),
            Index::Panes(panes) => panes.0.clear(),
        }
        for slot in 0..u32::try_from(self.slots.len()).expect("slot numbers are u32") {
            let (key, start) = self.slots.get(slot);
            if key == FREE_KEY {
                continue;
            }
            self.slots.set(slot, remap.new_id(key), start);
            self.index_slot(slot);
        }
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
    fn a_fixed_window_takes_an_8_byte_slot_and_an_8_byte_count() {
        let mut windows = Windows::on_grid(10);
        windows.insert(1, TimeWindow { start: 0, end: 10 }, Acc::Count(0));
        windows.insert(2, TimeWindow { start: 10, end: 20 }, Acc::Count(0));
        assert!(matches!(windows.accs, Accs::Count(_)), "{:?}", windows.accs);
        assert!(
            matches!(windows.slots, Slots::Grid { .. }),
            "{:?}",
            windows.slots
        );
        assert!(
            matches!(windows.lengths, Lengths::Same(10)),
            "fixed-size windows keep one length: {:?}",
            windows.lengths
        );
    }

    #[test]
    fn a_key_is_its_entry_and_entries_are_reused() {
        let mut keys = Keys::default();
        let a = keys.intern(b"alpha");
        assert_eq!(keys.intern(b"alpha"), a);
        let b = keys.intern(b"beta");
        assert_ne!(a, b);
        assert_eq!(
            keys.arena.len(),
            2 * OPEN + 2 + 5 + 4,
            "an entry is its count, length and bytes, nothing else"
        );
        keys.window_opened(b);
        keys.window_opened(b);
        keys.window_closed(b);
        assert_eq!((keys.open(a), keys.open(b)), (0, 1));
        keys.release_if_unused(a);
        keys.release_if_unused(b); // holds a window: kept
        assert_eq!(keys.len(), 1);
        // Churn through far more key bytes than stay held: the arena stays small.
        for i in 0..200_000u32 {
            let id = keys.intern(format!("key-{i:020}").as_bytes());
            keys.release_if_unused(id);
        }
        assert_eq!(keys.len(), 1);
        assert_eq!(keys.bytes(b), b"beta");
        assert!(keys.arena.len() < 100, "{}", keys.arena.len());
        assert_eq!(keys.intern(b"beta"), b);
        assert!(!keys.wants_compaction());
    }

    #[test]
    fn released_keys_leave_their_entries_to_keys_of_their_size() {
        let mut keys = Keys::default();
        let user = |i: u32| format!("user-{i:06}");
        let old: Vec<u32> = (0..1000).map(|i| keys.intern(user(i).as_bytes())).collect();
        let long = vec![b'x'; 300]; // a two-byte length prefix
        let (l, short) = (keys.intern(&long), keys.intern(b"a"));
        let arena = keys.arena.len();
        for &id in &old {
            keys.release_if_unused(id);
        }
        let new: Vec<u32> = (1000..2000)
            .map(|i| keys.intern(user(i).as_bytes()))
            .collect();
        assert_eq!(
            keys.arena.len(),
            arena,
            "the new keys took the old keys' entries"
        );
        let (mut old_ids, mut new_ids) = (old, new.clone());
        old_ids.sort_unstable();
        new_ids.sort_unstable();
        assert_eq!(old_ids, new_ids, "and so their ids");
        assert_eq!(keys.len(), 1002);
        assert_eq!(keys.bytes(l), &long[..]);
        assert_eq!(keys.bytes(short), b"a");
        for (i, id) in (1000..2000).zip(new) {
            assert_eq!(keys.bytes(id), user(i).as_bytes());
            assert_eq!(keys.intern(user(i).as_bytes()), id);
        }
        keys.release_if_unused(short);
        assert_eq!(
            keys.intern(b"b"),
            short,
            "a one-byte key's entry is reused too"
        );
    }

    #[test]
    fn compaction_keeps_every_held_key_and_says_its_new_id() {
        let mut keys = Keys::default();
        let mut windows = Windows::on_grid(10);
        let held: Vec<(Vec<u8>, u32, u32)> = (0..3000u32)
            .map(|i| {
                // Keys of many sizes, so released entries are seldom reused.
                let bytes = format!("{i}-{}", "k".repeat(i as usize % 700)).into_bytes();
                let id = keys.intern(&bytes);
                keys.window_opened(id);
                let slot =
                    windows.insert(id, TimeWindow { start: 0, end: 10 }, Acc::Count(i.into()));
                (bytes, id, slot)
            })
            .collect();
        for i in 0..2000 {
            // Each of a size of its own: no later key reuses its entry.
            let id = keys.intern("g".repeat(1000 + i).as_bytes());
            keys.release_if_unused(id);
        }
        assert!(
            keys.wants_compaction(),
            "garbage {} of {}",
            keys.garbage,
            keys.arena.len()
        );
        let before = keys.arena.len();
        let remap = keys.compact();
        windows.rekey(&remap);
        assert!(keys.arena.len() < before / 2);
        assert!(!keys.wants_compaction());
        assert_eq!(keys.len(), held.len());
        for (bytes, old, slot) in &held {
            let id = remap.new_id(*old);
            assert_eq!(keys.bytes(id), &bytes[..]);
            assert_eq!(keys.intern(bytes), id, "found under its new id");
            assert_eq!(keys.open(id), 1, "with its count");
            assert_eq!(
                windows.get(id, TimeWindow { start: 0, end: 10 }),
                Some(*slot)
            );
        }
        // Released entries are reused after it as before.
        let id = keys.intern(b"new");
        keys.release_if_unused(id);
        assert_eq!(keys.intern(b"old"), id);
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

    #[test]
    fn a_pane_whose_windows_all_closed_leaves_whole_and_a_partly_closed_one_keeps_the_rest() {
        let mut windows = Windows::on_grid(10);
        let w = |start| TimeWindow {
            start,
            end: start + 10,
        };
        let first: Vec<u32> = (0..100)
            .map(|key| windows.insert(key, w(0), Acc::Count(key.into())))
            .collect();
        let second: Vec<u32> = (0..100)
            .map(|key| windows.insert(key, w(10), Acc::Count(0)))
            .collect();
        for &slot in &first {
            windows.close(slot);
        }
        windows.settle();
        let Index::Panes(panes) = &windows.index else {
            panic!("fixed-size windows are indexed by pane");
        };
        assert_eq!(panes.0.len(), 1, "the closed pane's table is gone");
        assert_eq!(windows.len(), 100);
        assert_eq!(windows.get(3, w(0)), None);
        // Half of a pane closed, then windows open again in the freed slots.
        for &slot in &second[..50] {
            windows.close(slot);
        }
        windows.settle();
        for key in 0..100 {
            let open = windows.get(key, w(10));
            assert_eq!(open, (key >= 50).then(|| second[key as usize]));
        }
        let reopened: Vec<u32> = (0..50)
            .map(|key| windows.insert(key, w(20), Acc::Count(1)))
            .collect();
        for (key, slot) in (0..50).zip(reopened) {
            assert!(
                first.contains(&slot) || second.contains(&slot),
                "slots reused"
            );
            assert_eq!(windows.get(key, w(20)), Some(slot));
            assert_eq!(
                windows.get(key, w(10)),
                None,
                "the closed window is not found"
            );
        }
        assert_eq!(windows.len(), 100);
        assert_eq!(windows.iter().count(), 100);
        assert_eq!(
            windows.remove(60, w(10)).map(|(_, acc)| acc),
            Some(Acc::Count(0))
        );
        assert_eq!(windows.len(), 99);
    }
}
