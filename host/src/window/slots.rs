//! The key and start of each window slot: 8 bytes a slot while the windows' starts lie
//! on a grid (fixed-size windows start at `offset + n × slide`, so a slot holds `n` in
//! 4 bytes), 12 bytes otherwise (sessions).
//!
//! Invariants: `get(s)` gives what the last `set(s, ..)` or `push` stored for slot `s`; a
//! start off the grid, or too far from its base to number in 4 bytes, turns every slot
//! wide, so nothing is lost. A free slot holds [`FREE_KEY`] and the next free slot.

use super::prefetch::prefetch;

/// The key of a slot no window holds.
pub const FREE_KEY: u32 = u32::MAX;

/// A slot on the grid: its start is `base + n × step`.
#[derive(Debug, Clone, Copy)]
pub struct GridSlot {
    n: u32,
    key: u32,
}

/// A slot with its start in full.
#[derive(Debug, Clone, Copy)]
#[repr(C, packed(4))]
pub struct WideSlot {
    start: i64,
    key: u32,
}

/// The slots' keys and starts.
#[derive(Debug)]
pub enum Slots {
    /// Every start on the grid of `step`; `base` is set by the first slot stored.
    Grid {
        /// Distance between grid points, ms.
        step: i64,
        /// The start of `n = 0`.
        base: Option<i64>,
        /// The slots.
        slots: Vec<GridSlot>,
    },
    /// Starts anywhere.
    Wide(Vec<WideSlot>),
}

impl Default for Slots {
    fn default() -> Self {
        Self::Wide(Vec::new())
    }
}

impl Slots {
    /// Slots for windows starting on a grid of `step` ms (wide slots if `step` is not
    /// positive).
    pub fn on_grid(step: i64) -> Self {
        if step <= 0 {
            return Self::default();
        }
        Self::Grid {
            step,
            base: None,
            slots: Vec::new(),
        }
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        match self {
            Self::Grid { slots, .. } => slots.len(),
            Self::Wide(slots) => slots.len(),
        }
    }

    /// The key and start slot `slot` holds (the key is [`FREE_KEY`] for a free slot).
    #[inline]
    pub fn get(&self, slot: u32) -> (u32, i64) {
        match self {
            Self::Grid { step, base, slots } => {
                let held = slots[slot as usize];
                let start = base
                    .unwrap_or(0)
                    .wrapping_add(i64::from(held.n).wrapping_mul(*step));
                (held.key, start)
            }
            Self::Wide(slots) => {
                let held = slots[slot as usize];
                (held.key, held.start)
            }
        }
    }

    /// Whether slot `slot` holds the window of `key` starting at `start`.
    #[inline]
    pub fn is(&self, slot: u32, key: u32, start: i64) -> bool {
        self.get(slot) == (key, start)
    }

    /// Stores the window of `key` starting at `start` in slot `slot`.
    pub fn set(&mut self, slot: u32, key: u32, start: i64) {
        match self.grid_point(start) {
            Some(n) => self.grid_slots()[slot as usize] = GridSlot { n, key },
            None => self.wide_slots()[slot as usize] = WideSlot { start, key },
        }
    }

    /// Adds a slot holding the window of `key` starting at `start`.
    pub fn push(&mut self, key: u32, start: i64) {
        match self.grid_point(start) {
            Some(n) => self.grid_slots().push(GridSlot { n, key }),
            None => self.wide_slots().push(WideSlot { start, key }),
        }
    }

    /// Brings slot `slot` into the cache ahead of its use.
    pub(super) fn prefetch(&self, slot: u32) {
        match self {
            Self::Grid { slots, .. } => prefetch(&slots[slot as usize]),
            Self::Wide(slots) => prefetch(&slots[slot as usize]),
        }
    }

    /// Frees slot `slot`, chaining it to the free slot `next`.
    pub fn free(&mut self, slot: u32, next: u32) {
        match self {
            Self::Grid { slots, .. } => {
                slots[slot as usize] = GridSlot {
                    n: next,
                    key: FREE_KEY,
                }
            }
            Self::Wide(slots) => {
                slots[slot as usize] = WideSlot {
                    start: i64::from(next),
                    key: FREE_KEY,
                }
            }
        }
    }

    /// The free slot chained after free slot `slot`.
    pub fn next_free(&self, slot: u32) -> u32 {
        match self {
            Self::Grid { slots, .. } => slots[slot as usize].n,
            Self::Wide(slots) => {
                let start = slots[slot as usize].start;
                start as u32
            }
        }
    }

    /// The grid number of `start`, fixing the grid's base at the first start; `None` for
    /// wide slots or a start that does not fit the grid.
    fn grid_point(&mut self, start: i64) -> Option<u32> {
        let Self::Grid { step, base, .. } = self else {
            return None;
        };
        // The first start sits mid-range, so starts before and after it both fit.
        let base =
            *base.get_or_insert_with(|| start.saturating_sub((1i64 << 31).saturating_mul(*step)));
        let distance = start.checked_sub(base)?;
        if distance % *step != 0 {
            return None;
        }
        u32::try_from(distance / *step).ok()
    }

    /// The grid slots (only called when a start fits the grid, which it does not for
    /// wide slots).
    fn grid_slots(&mut self) -> &mut Vec<GridSlot> {
        match self {
            Self::Grid { slots, .. } => slots,
            Self::Wide(_) => unreachable!("a start fits the grid only of grid slots"),
        }
    }

    /// The slots, made wide if they were on a grid.
    fn wide_slots(&mut self) -> &mut Vec<WideSlot> {
        if let Self::Grid { .. } = self {
            let wide = (0..self.len() as u32)
                .map(|slot| {
                    let (key, start) = self.get(slot);
                    let start = if key == FREE_KEY {
                        i64::from(self.next_free(slot))
                    } else {
                        start
                    };
                    WideSlot { start, key }
                })
                .collect();
            *self = Self::Wide(wide);
        }
        match self {
            Self::Wide(slots) => slots,
            Self::Grid { .. } => unreachable!("just made wide"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_on_a_grid_take_8_bytes_and_turn_wide_for_a_start_off_it() {
        assert_eq!(size_of::<GridSlot>(), 8);
        assert_eq!(size_of::<WideSlot>(), 12);
        let mut slots = Slots::on_grid(60_000);
        slots.push(1, 1_800_000);
        slots.push(2, 1_740_000); // before the first: fits too
        slots.push(3, 0);
        slots.free(2, 7);
        assert!(matches!(slots, Slots::Grid { .. }));
        assert!(slots.is(0, 1, 1_800_000));
        assert!(!slots.is(0, 1, 1_860_000));
        assert_eq!(slots.get(1), (2, 1_740_000));
        assert_eq!((slots.get(2).0, slots.next_free(2)), (FREE_KEY, 7));
        // A start off the grid: every slot turns wide, nothing lost.
        slots.set(2, 4, 61_000);
        assert!(matches!(slots, Slots::Wide(_)));
        assert_eq!(slots.get(0), (1, 1_800_000));
        assert_eq!(slots.get(1), (2, 1_740_000));
        assert_eq!(slots.get(2), (4, 61_000));
        // So does one too far from the base to number in 4 bytes.
        let mut far = Slots::on_grid(1);
        far.push(1, 0);
        far.push(2, 1 << 40);
        assert!(matches!(far, Slots::Wide(_)));
        assert_eq!((far.get(0), far.get(1)), ((1, 0), (2, 1 << 40)));
        // A free slot's chain survives the widening.
        let mut freed = Slots::on_grid(10);
        freed.push(1, 0);
        freed.push(2, 10);
        freed.free(0, 1);
        freed.push(3, 5);
        assert_eq!((freed.get(0).0, freed.next_free(0)), (FREE_KEY, 1));
    }
}
