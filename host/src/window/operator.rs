//! The keyed window operator: assigns events to windows, keeps one accumulator per key and
//! window, and fires windows as the watermark passes their end — Flink's event-time
//! windows with the default trigger and allowed lateness.
//!
//! - A window `[start, end)` fires when the watermark reaches `end - 1`.
//! - An event whose every window has `end - 1 + allowed_lateness <= watermark` is late:
//!   it goes to the late sink with the window it missed. Nothing is dropped silently.
//! - A window keeps its state until the watermark passes `end - 1 + allowed_lateness`;
//!   an event that arrives after the window fired but within the lateness updates it and
//!   fires it again with the full, updated result.
//! - Session windows of a key merge when a new event's `[ts, ts + gap)` touches them.
//!
//! Firing does not scan keys: windows are indexed by their timers (grouped by end
//! times), so a watermark advance costs only the windows it fires. A firing of many
//! windows hands its results on in chunks of about [`SPILL_BYTES`] as it goes (when the
//! caller gives a place to spill them), so a burst is never gathered whole.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap as HashMap;

use anyhow::Result;

use super::aggregate::{Acc, Aggregator};
use super::assigner::{Assigner, TimeWindow};
use super::checkpoint::WindowSnapshot;
use super::due::{Due, DueList};
use super::table::{Keys, Windows};
use crate::batch::{EventBatch, RecordBuffer, Records};
use crate::dead_letter::DeadLetters;
use crate::json_text::write_str;
use crate::watermark::MIN_WATERMARK;

/// Results gathered past this many bytes are handed on (see [`Results`]); the buffer
/// that gathers them stays this large between batches, so it is small.
pub const SPILL_BYTES: usize = 512 << 10;

/// Takes a chunk of window results (a sink's write).
pub type Spill<'a> = &'a mut dyn FnMut(Records<'_>) -> Result<()>;

/// Where window results go while a batch is processed: a buffer the caller takes after
/// the batch, and, optionally, a place that takes the buffer whenever it passes
/// [`SPILL_BYTES`] (a sink), in the same order.
pub struct Results<'a> {
    buffer: &'a mut RecordBuffer,
    spill: Option<Spill<'a>>,
}

impl<'a> Results<'a> {
    /// Results gathered in `buffer`, handed to `spill` in chunks when given.
    pub fn new(buffer: &'a mut RecordBuffer, spill: Option<Spill<'a>>) -> Self {
        Self { buffer, spill }
    }

    /// Appends one result; hands the buffer on if it is full.
    fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> Result<()> {
        self.buffer.push_with(write);
        if self.buffer.byte_len() >= SPILL_BYTES {
            if let Some(spill) = &mut self.spill {
                spill(self.buffer.records())?;
                self.buffer.clear();
            }
        }
        Ok(())
    }
}

/// Counters of the window operator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowCounters {
    /// Window results emitted (a window fired again by a late event counts again).
    pub firings: u64,
    /// Events that arrived after their window fired, within the allowed lateness.
    pub late_accepted: u64,
    /// Events past the allowed lateness, sent to the late sink.
    pub late_rejected: u64,
    /// Events that could not be aggregated (e.g. no numeric field), dead-lettered.
    pub unaggregatable: u64,
}

/// The part of a result between its key and its value, for one window and aggregate:
/// `,"window_start":0,"window_end":60000,"count":`. The windows of a firing mostly share
/// their bounds, so it is written once for all of them.
#[derive(Default)]
struct ResultMiddle {
    /// Written for this window (`None`: not written yet) and aggregate name.
    window: Option<TimeWindow>,
    name: String,
    text: Vec<u8>,
}

impl ResultMiddle {
    /// Makes `text` that of `window` and the aggregate `name`.
    fn write_for(&mut self, window: TimeWindow, name: &str) {
        if self.window == Some(window) && self.name == name {
            return;
        }
        let mut num = itoa::Buffer::new();
        let text = &mut self.text;
        text.clear();
        text.extend_from_slice(b",\"window_start\":");
        text.extend_from_slice(num.format(window.start).as_bytes());
        text.extend_from_slice(b",\"window_end\":");
        text.extend_from_slice(num.format(window.end).as_bytes());
        text.push(b',');
        write_str(text, name.as_bytes());
        text.push(b':');
        self.window = Some(window);
        if self.name != name {
            self.name = name.to_string();
        }
    }
}

/// The keyed window operator.
pub struct WindowOperator {
    assigner: Assigner,
    lateness: i64,
    aggregator: Box<dyn Aggregator>,
    keys: Keys,
    /// Open windows, each in a slot with its accumulator.
    windows: Windows,
    /// Session windows per key (merging assigners only).
    sessions: HashMap<u32, Vec<TimeWindow>>,
    /// Window slots by timer time: fire at `end - 1`, clean up at `end - 1 + lateness`.
    /// Many windows share an end, so a watermark step takes whole groups. An entry may
    /// outlive its window (a merged session): at its time, a slot is acted on only for
    /// what the window it holds then is due for.
    timers: BTreeMap<i64, Vec<u32>>,
    watermark: i64,
    counters: WindowCounters,
    assigned: Vec<TimeWindow>,
    /// Scratch space for one window's result.
    result: Vec<u8>,
    /// The last result's bounds and aggregate name, as written.
    middle: ResultMiddle,
    /// The windows one timer fires, in firing order (kept between firings).
    firing: DueList,
    /// Changes since the last checkpoint, for incremental checkpoints: which slots
    /// changed, and the windows closed.
    dirty: Vec<bool>,
    dirty_slots: Vec<u32>,
    removed: Vec<(Vec<u8>, i64, i64)>,
    /// Whether changes are tracked at all (only a checkpointing job needs them; untracked,
    /// closed windows would pile up in `removed`).
    track_changes: bool,
    /// The window's definition (see [`WindowOperator::spec`]).
    spec: String,
    /// The most windows a key may hold open at once (see
    /// [`WindowOperator::with_max_open_windows_per_key`]).
    max_open_per_key: u64,
}

impl WindowOperator {
    /// An operator with `assigner`, `allowed_lateness` ms, and `aggregator`.
    pub fn new(assigner: Assigner, allowed_lateness: i64, aggregator: Box<dyn Aggregator>) -> Self {
        Self {
            assigner,
            lateness: allowed_lateness,
            aggregator,
            keys: Keys::default(),
            windows: match assigner {
                Assigner::Tumbling { size, .. } => Windows::on_grid(size),
                Assigner::Sliding { slide, .. } => Windows::on_grid(slide),
                Assigner::Session { .. } => Windows::default(),
            },
            sessions: HashMap::default(),
            timers: BTreeMap::new(),
            watermark: MIN_WATERMARK,
            counters: WindowCounters::default(),
            assigned: Vec::new(),
            result: Vec::new(),
            middle: ResultMiddle::default(),
            firing: DueList::default(),
            dirty: Vec::new(),
            dirty_slots: Vec::new(),
            removed: Vec::new(),
            track_changes: false,
            spec: String::new(),
            max_open_per_key: u64::MAX,
        }
    }

    /// Bounds the windows one key may hold open at once: an event that would open more
    /// goes to the dead-letter sink, so one key (or a huge allowed lateness) cannot
    /// exhaust memory.
    pub fn with_max_open_windows_per_key(mut self, max: u64) -> Self {
        self.max_open_per_key = max;
        self
    }

    /// The windows of `assigned` an event of `key` would open that are not open yet,
    /// when that takes the key past its bound: how many the key would then hold.
    fn over_bound(&self, key: u32, assigned: &[TimeWindow]) -> Option<u64> {
        let open = u64::from(self.keys.open(key));
        if open + assigned.len() as u64 <= self.max_open_per_key {
            return None; // the common case: no lookup needed
        }
        let new = if self.assigner.is_merging() {
            let sessions = self.sessions.get(&key).map_or(&[][..], |s| s.as_slice());
            u64::from(!sessions.iter().any(|s| s.intersects(&assigned[0])))
        } else {
            assigned
                .iter()
                .filter(|w| self.windows.get(key, **w).is_none())
                .count() as u64
        };
        (new > 0 && open + new > self.max_open_per_key).then_some(open + new)
    }

    /// The aggregate, to change (a hot swap of a Wasm aggregate, at a batch boundary).
    pub fn aggregator_mut(&mut self) -> &mut dyn Aggregator {
        self.aggregator.as_mut()
    }

    /// The aggregate.
    pub fn aggregator(&self) -> &dyn Aggregator {
        self.aggregator.as_ref()
    }

    /// The operator's counters.
    pub fn counters(&self) -> WindowCounters {
        self.counters
    }

    /// The window's definition, as checkpoints record it: window state restores only
    /// into the same definition.
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// Names the window's definition (see [`WindowOperator::spec`]).
    pub fn with_spec(mut self, spec: String) -> Self {
        self.spec = spec;
        self
    }

    /// The window state a checkpoint records: all of it, or with `incremental` only what
    /// changed since the last snapshot.
    pub fn state(&mut self, incremental: bool) -> WindowSnapshot {
        let windows = if incremental {
            self.dirty_slots
                .iter()
                .filter_map(|&slot| {
                    let (key, window) = self.windows.held(slot)?;
                    Some(self.window_entry(slot, key, window))
                })
                .collect()
        } else {
            self.windows
                .iter()
                .map(|(slot, key, window)| self.window_entry(slot, key, window))
                .collect()
        };
        let removed = std::mem::take(&mut self.removed);
        for slot in self.dirty_slots.drain(..) {
            self.dirty[slot as usize] = false;
        }
        let c = self.counters;
        WindowSnapshot {
            spec: self.spec.clone(),
            aggregate: self.aggregator.version(),
            watermark: self.watermark,
            windows,
            removed: if incremental { removed } else { Vec::new() },
            counters: [
                c.firings,
                c.late_accepted,
                c.late_rejected,
                c.unaggregatable,
            ],
        }
    }

    fn window_entry(&self, slot: u32, key: u32, window: TimeWindow) -> (Vec<u8>, i64, i64, Acc) {
        (
            self.keys.bytes(key).to_vec(),
            window.start,
            window.end,
            self.windows.accs.get(slot),
        )
    }

    /// Tracks changes from now on, for incremental checkpoints.
    pub fn track_changes(&mut self) {
        self.track_changes = true;
    }

    /// Changes since the last checkpoint: windows created, updated or closed.
    pub fn changes(&self) -> usize {
        self.dirty_slots.len() + self.removed.len()
    }

    fn mark_dirty(&mut self, slot: u32) {
        if !self.track_changes {
            return;
        }
        if self.dirty.len() <= slot as usize {
            self.dirty.resize(self.windows.slot_count(), false);
        }
        let flag = &mut self.dirty[slot as usize];
        if !*flag {
            *flag = true;
            self.dirty_slots.push(slot);
        }
    }

    /// Restores checkpointed window state into this (empty) operator; timers are
    /// registered again for the windows' ends the watermark has not passed. The restored
    /// state counts as unchanged (the next incremental checkpoint builds on it).
    pub fn restore_state(&mut self, snapshot: &WindowSnapshot) {
        self.watermark = snapshot.watermark;
        let [firings, late_accepted, late_rejected, unaggregatable] = snapshot.counters;
        self.counters = WindowCounters {
            firings,
            late_accepted,
            late_rejected,
            unaggregatable,
        };
        for (key, start, end, acc) in &snapshot.windows {
            let key = self.keys.intern(key);
            let window = TimeWindow {
                start: *start,
                end: *end,
            };
            let slot = self.store_acc(key, window, acc.clone());
            if self.assigner.is_merging() {
                self.sessions.entry(key).or_default().push(window);
            }
            let fire = window.max_timestamp();
            let cleanup = fire.saturating_add(self.lateness);
            if fire > self.watermark {
                self.timers.entry(fire).or_default().push(slot);
            }
            if cleanup != fire && cleanup > self.watermark {
                self.timers.entry(cleanup).or_default().push(slot);
            }
        }
        for slot in self.dirty_slots.drain(..) {
            self.dirty[slot as usize] = false;
        }
    }

    /// Number of keys with open windows.
    pub fn open_keys(&self) -> usize {
        self.keys.len()
    }

    /// Bytes the interned keys take.
    #[cfg(test)]
    pub fn key_bytes(&self) -> usize {
        self.keys.arena_len()
    }

    /// Number of open (key, window) pairs.
    pub fn open_windows(&self) -> usize {
        self.windows.len()
    }

    /// Processes a batch: each event is judged by the watermark that held just before it
    /// was read (`origins[i].watermark`); afterwards the watermark advances to
    /// `end_watermark`. Results go to `out`, late events to `late`, events that cannot be
    /// aggregated to `dead`.
    pub fn process(
        &mut self,
        batch: &EventBatch,
        end_watermark: i64,
        out: &mut Results<'_>,
        late: &mut DeadLetters,
        dead: &mut DeadLetters,
    ) -> Result<()> {
        for i in 0..batch.len() {
            self.advance(batch, batch.origins[i].watermark, out)?;
            let value = match self.aggregator.prepare(batch, i) {
                Ok(value) => value,
                Err(reason) => {
                    self.counters.unaggregatable += 1;
                    dead.push(
                        &reason,
                        batch.origins[i],
                        None,
                        crate::dead_letter::DeadValue::Json(batch.value(i)),
                    );
                    continue;
                }
            };
            let key = self.keys.intern(batch.key(i));
            let timestamp = batch.columns.timestamps[i];
            let mut assigned = std::mem::take(&mut self.assigned);
            assigned.clear();
            self.assigner.assign(timestamp, &mut assigned);
            if let Some(would_hold) = self.over_bound(key, &assigned) {
                let reason = format!(
                    "key {:?} would hold {would_hold} open windows, more than [window] \
                     max_open_windows_per_key = {}; check the key field and allowed_lateness, \
                     or raise the bound",
                    String::from_utf8_lossy(batch.key(i)),
                    self.max_open_per_key
                );
                dead.push(
                    &reason,
                    batch.origins[i],
                    None,
                    crate::dead_letter::DeadValue::Json(batch.value(i)),
                );
                self.assigned = assigned;
                self.keys.release_if_unused(key);
                continue;
            }
            let accepted = if self.assigner.is_merging() {
                self.add_to_session(batch, i, key, assigned[0], value, out)
            } else {
                self.add_to_windows(batch, i, key, &assigned, value, out)
            };
            self.assigned = assigned;
            let accepted = accepted?;
            if let Err(missed) = accepted {
                self.counters.late_rejected += 1;
                let reason = format!(
                    "late: event time {timestamp} is past its window [{}, {}) plus the allowed lateness of {} ms at watermark {}",
                    missed.start, missed.end, self.lateness, self.watermark
                );
                late.push_late(
                    &reason,
                    batch.origins[i],
                    (missed.start, missed.end),
                    batch.value(i),
                );
            }
            self.keys.release_if_unused(key);
        }
        self.aggregator.flush(batch, &mut self.windows.accs)?;
        self.advance(batch, end_watermark, out)?;
        if self.keys.wants_compaction() {
            // Between batches, where the only key ids held are the windows' and sessions'.
            let remap = self.keys.compact();
            self.windows.rekey(&remap);
            self.sessions = std::mem::take(&mut self.sessions)
                .into_iter()
                .map(|(key, sessions)| (remap.new_id(key), sessions))
                .collect();
        }
        Ok(())
    }

    /// Advances the watermark (never backwards) and fires the windows it passes, in order
    /// of their end, then key, then start.
    pub fn advance(
        &mut self,
        batch: &EventBatch,
        watermark: i64,
        out: &mut Results<'_>,
    ) -> Result<()> {
        if watermark <= self.watermark {
            return Ok(());
        }
        self.watermark = watermark;
        let mut flushed = false;
        while let Some(entry) = self.timers.first_entry() {
            let time = *entry.key();
            if time > watermark {
                break;
            }
            let (keys, windows) = (&self.keys, &self.windows);
            let mut firing = std::mem::take(&mut self.firing);
            let due = entry.remove().into_iter().filter_map(|slot| {
                // A slot whose window closed (merged into a larger session, or cleaned
                // up) holds nothing, or a window with timers of its own.
                let (key, _) = windows.held(slot)?;
                Some(Due::new(keys.bytes(key), slot, key))
            });
            let due = firing.sorted(due, keys, windows);
            let fired = self.fire(batch, time, due, &mut flushed, out);
            // Also after a failed firing, so the windows it closed leave the index.
            self.windows.settle();
            firing.clear();
            self.firing = firing;
            fired?;
        }
        Ok(())
    }

    /// Fires and cleans up the windows `due` at timer `time`, in their order.
    fn fire(
        &mut self,
        batch: &EventBatch,
        time: i64,
        due: &[Due],
        flushed: &mut bool,
        out: &mut Results<'_>,
    ) -> Result<()> {
        for &Due { slot, key, .. } in due {
            // Slots are neither freed twice nor reused while a firing goes on.
            let Some((_, window)) = self.windows.held(slot) else {
                continue;
            };
            if time == window.max_timestamp() {
                if !*flushed {
                    self.aggregator.flush(batch, &mut self.windows.accs)?;
                    *flushed = true;
                }
                self.emit(key, window, slot, out)?;
            }
            if time == window.max_timestamp().saturating_add(self.lateness) {
                self.windows.close(slot);
                self.forget(key, window);
                self.keys.release_if_unused(key);
            }
        }
        Ok(())
    }

    /// Whether a window's state is gone for good at the current watermark.
    fn is_late(&self, window: &TimeWindow) -> bool {
        window.max_timestamp().saturating_add(self.lateness) <= self.watermark
    }

    /// Adds event `i` to its `assigned` (non-merging) windows. `Err` names a window it was
    /// too late for, when it was too late for all of them.
    fn add_to_windows(
        &mut self,
        batch: &EventBatch,
        i: usize,
        key: u32,
        assigned: &[TimeWindow],
        value: Option<f64>,
        out: &mut Results<'_>,
    ) -> Result<Result<(), TimeWindow>> {
        let mut accepted = false;
        let mut late_but_allowed = false;
        // A key with no open window (just interned) has none of these to look up.
        let has_windows = self.keys.open(key) > 0;
        for &window in assigned {
            if self.is_late(&window) {
                continue;
            }
            accepted = true;
            let slot = self.window_slot(key, window, has_windows)?;
            self.aggregator.fold(&mut self.windows.accs, slot, i, value);
            self.mark_dirty(slot);
            if window.max_timestamp() <= self.watermark {
                late_but_allowed = true;
                self.aggregator.flush(batch, &mut self.windows.accs)?;
                self.emit(key, window, slot, out)?;
            }
        }
        self.counters.late_accepted += u64::from(late_but_allowed);
        let missed = assigned.first().copied();
        Ok(match (accepted, missed) {
            (false, Some(window)) => Err(window),
            _ => Ok(()),
        })
    }

    /// Adds event `i` to its key's sessions, merging the ones its `new` session window
    /// `[ts, ts + gap)` touches.
    fn add_to_session(
        &mut self,
        batch: &EventBatch,
        i: usize,
        key: u32,
        new: TimeWindow,
        value: Option<f64>,
        out: &mut Results<'_>,
    ) -> Result<Result<(), TimeWindow>> {
        let touching: Vec<TimeWindow> = self
            .sessions
            .get(&key)
            .map(|sessions| {
                sessions
                    .iter()
                    .copied()
                    .filter(|s| s.intersects(&new))
                    .collect()
            })
            .unwrap_or_default();
        let merged = touching.iter().fold(new, |acc, s| acc.cover(s));
        if self.is_late(&merged) {
            return Ok(Err(merged));
        }
        let slot = if touching.len() == 1 && touching[0] == merged {
            self.windows
                .get(key, merged)
                .expect("a session in the list has state")
        } else {
            self.aggregator.flush(batch, &mut self.windows.accs)?;
            let mut acc = self.aggregator.create()?;
            for old in &touching {
                let old = self
                    .remove(key, *old)
                    .expect("a session in the list has state");
                acc = self.aggregator.merge(acc, old)?;
            }
            let slot = self.store_acc(key, merged, acc);
            self.sessions.entry(key).or_default().push(merged);
            self.register_timers(slot, merged);
            slot
        };
        self.aggregator.fold(&mut self.windows.accs, slot, i, value);
        self.mark_dirty(slot);
        if merged.max_timestamp() <= self.watermark {
            self.counters.late_accepted += 1;
            self.aggregator.flush(batch, &mut self.windows.accs)?;
            self.emit(key, merged, slot, out)?;
        }
        Ok(Ok(()))
    }

    /// The accumulator slot of a window, creating the window (and its timers) if new
    /// (it is looked up only if the key `has_windows`).
    fn window_slot(&mut self, key: u32, window: TimeWindow, has_windows: bool) -> Result<u32> {
        if let Some(slot) = has_windows.then(|| self.windows.get(key, window)).flatten() {
            return Ok(slot);
        }
        let acc = self.aggregator.create()?;
        let slot = self.store_acc(key, window, acc);
        self.register_timers(slot, window);
        Ok(slot)
    }

    /// Registers a new window's timers. A window created when the watermark is already
    /// past its end (a late event within the allowed lateness) gets no firing timer: it
    /// fires on the element itself, as Flink's event-time trigger does.
    fn register_timers(&mut self, slot: u32, window: TimeWindow) {
        let fire = window.max_timestamp();
        if fire > self.watermark {
            self.timers.entry(fire).or_default().push(slot);
        }
        if self.lateness > 0 {
            let cleanup = fire.saturating_add(self.lateness);
            self.timers.entry(cleanup).or_default().push(slot);
        }
    }

    /// Opens `window` of `key` with `acc`; returns its slot.
    fn store_acc(&mut self, key: u32, window: TimeWindow, acc: Acc) -> u32 {
        let slot = self.windows.insert(key, window, acc);
        self.keys.window_opened(key);
        self.mark_dirty(slot);
        slot
    }

    /// Removes a window's state, returning its accumulator.
    fn remove(&mut self, key: u32, window: TimeWindow) -> Option<Acc> {
        let (_, acc) = self.windows.remove(key, window)?;
        self.forget(key, window);
        Some(acc)
    }

    /// Accounts for a window of `key` that was closed.
    fn forget(&mut self, key: u32, window: TimeWindow) {
        self.keys.window_closed(key);
        if self.track_changes {
            let key = self.keys.bytes(key).to_vec();
            self.removed.push((key, window.start, window.end));
        }
        if let Some(sessions) = self.sessions.get_mut(&key) {
            sessions.retain(|s| *s != window);
            if sessions.is_empty() {
                self.sessions.remove(&key);
            }
        }
    }

    /// Writes one window result:
    /// `{"key":"user-1","window_start":0,"window_end":60000,"count":3}`.
    fn emit(
        &mut self,
        key: u32,
        window: TimeWindow,
        slot: u32,
        out: &mut Results<'_>,
    ) -> Result<()> {
        let mut result = std::mem::take(&mut self.result);
        result.clear();
        // Moved out and back, so a Wasm aggregate's bytes are not copied per result.
        let acc = self.windows.accs.take(slot);
        let finished = self.aggregator.finish(&acc, &mut result);
        self.windows.accs.set(slot, acc);
        if let Err(e) = finished {
            self.result = result;
            return Err(e);
        }
        self.middle.write_for(window, self.aggregator.name());
        let (key, middle) = (self.keys.bytes(key), &self.middle.text);
        let pushed = out.push_with(|buf| {
            buf.extend_from_slice(b"{\"key\":");
            write_str(buf, key);
            buf.extend_from_slice(middle);
            buf.extend_from_slice(&result);
            buf.push(b'}');
        });
        self.result = result;
        self.counters.firings += 1;
        pushed
    }
}
