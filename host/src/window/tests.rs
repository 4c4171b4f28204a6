//! Window semantics, on hand-made streams and as properties of random ones. Events go
//! through the same ingest (per-event watermarks) and operator the pipeline uses.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::Value;

use super::*;
use crate::batch::EventBatch;
use crate::batch::RecordBuffer;
use crate::config::{AggregateKind, EventFields};
use crate::dead_letter::DeadLetters;
use crate::source::Ingest;
use crate::watermark::Watermarks;

/// One test event: key, event time, amount.
type Ev = (String, i64, i64);

fn ev(key: &str, ts: i64, amount: i64) -> Ev {
    (key.to_owned(), ts, amount)
}

/// What a run emitted: every firing in order, and every late event.
struct Run {
    firings: Vec<Value>,
    late: Vec<Value>,
    counters: WindowCounters,
}

impl Run {
    /// The last result of each window: `(key, start, end) -> result`.
    fn finals(&self, name: &str) -> BTreeMap<(String, i64, i64), Value> {
        self.firings
            .iter()
            .map(|f| {
                let key = (
                    f["key"].as_str().unwrap().to_owned(),
                    f["window_start"].as_i64().unwrap(),
                    f["window_end"].as_i64().unwrap(),
                );
                (key, f[name].clone())
            })
            .collect()
    }

    /// The late events' amounts and times, in order.
    fn late_events(&self) -> Vec<(i64, i64)> {
        self.late
            .iter()
            .map(|l| {
                (
                    l["value"]["ts"].as_i64().unwrap(),
                    l["value"]["amount"].as_i64().unwrap(),
                )
            })
            .collect()
    }
}

fn records(records: crate::batch::Records<'_>) -> Vec<Value> {
    records
        .iter()
        .map(|r| serde_json::from_slice(r).unwrap())
        .collect()
}

/// Runs `events` through ingest and a window operator, `batch` events at a time, then
/// ends the source (watermark to the end of time).
fn run(
    events: &[Ev],
    assigner: Assigner,
    lateness: i64,
    max_delay: u64,
    batch: usize,
    aggregate: AggregateKind,
) -> Run {
    let mut h = Harness::new(assigner, lateness, aggregate, 1, max_delay, None);
    for chunk in events.chunks(batch.max(1)) {
        h.feed(0, chunk);
    }
    h.finish();
    assert!(h.dead.is_empty());
    assert_eq!(
        h.op.open_windows(),
        0,
        "every window is cleaned up at the end of time"
    );
    assert_eq!(h.op.open_keys(), 0, "and every key is forgotten");
    assert_eq!(
        h.op.changes(),
        0,
        "without checkpoints no change log builds up"
    );
    Run {
        firings: records(h.out.records()),
        late: records(h.late.records()),
        counters: h.op.counters(),
    }
}

/// Events through ingest (watermarks advanced per event) into a window operator, a batch
/// at a time, as the pipeline does.
struct Harness {
    op: WindowOperator,
    watermarks: Watermarks,
    out: RecordBuffer,
    /// With `Some`, results are spilled as the pipeline spills them to its sink: each
    /// chunk handed on, in order.
    spilled: Option<Vec<Vec<Vec<u8>>>>,
    late: DeadLetters,
    dead: DeadLetters,
    position: u64,
}

impl Harness {
    fn new(
        assigner: Assigner,
        lateness: i64,
        aggregate: AggregateKind,
        partitions: u32,
        max_delay: u64,
        idle: Option<Duration>,
    ) -> Self {
        let aggregator = Box::new(Builtin::new(aggregate, Some("amount".into())));
        Self {
            op: WindowOperator::new(assigner, lateness, aggregator),
            watermarks: Watermarks::new(partitions, Duration::from_millis(max_delay), idle),
            out: RecordBuffer::default(),
            spilled: None,
            late: DeadLetters::default(),
            dead: DeadLetters::default(),
            position: 0,
        }
    }

    /// One batch of events, all read from `partition`.
    fn feed(&mut self, partition: u32, events: &[Ev]) {
        let fields = EventFields {
            time_field: Some("ts".into()),
            key_field: Some("k".into()),
            ..EventFields::default()
        };
        let mut batch = EventBatch::default();
        let mut ingest = Ingest::new(&mut batch, &mut self.dead, &fields, &mut self.watermarks);
        for (k, ts, amount) in events {
            let line = format!(r#"{{"k":"{k}","ts":{ts},"amount":{amount}}}"#);
            assert!(ingest.push_json(partition, self.position, line.as_bytes()));
            self.position += 1;
        }
        let watermark = self.watermarks.current();
        let spilling = self.spilled.is_some();
        let chunks = &mut self.spilled;
        let mut spill = |records: crate::batch::Records<'_>| {
            let chunks = chunks.as_mut().expect("spilling only when asked");
            chunks.push(records.iter().map(<[u8]>::to_vec).collect());
            Ok(())
        };
        let spill: Option<Spill<'_>> = if spilling { Some(&mut spill) } else { None };
        self.op
            .process(
                &batch,
                watermark,
                &mut Results::new(&mut self.out, spill),
                &mut self.late,
                &mut self.dead,
            )
            .unwrap();
    }

    /// The source ends: the watermark goes to the end of time.
    fn finish(&mut self) {
        self.watermarks.finish();
        self.feed(0, &[]);
    }
}

const TUMBLING_10: Assigner = Assigner::Tumbling {
    size: 10,
    offset: 0,
};

/// Feeds events one at a time and returns, after each, the windows fired so far.
fn firings_after_each(
    events: &[Ev],
    assigner: Assigner,
    lateness: i64,
) -> Vec<Vec<(i64, i64, Value)>> {
    (1..=events.len())
        .map(|n| {
            let mut h = Harness::new(assigner, lateness, AggregateKind::Count, 1, 0, None);
            for event in &events[..n] {
                h.feed(0, std::slice::from_ref(event));
            }
            records(h.out.records())
                .iter()
                .map(|f| {
                    (
                        f["window_start"].as_i64().unwrap(),
                        f["window_end"].as_i64().unwrap(),
                        f["count"].clone(),
                    )
                })
                .collect()
        })
        .collect()
}

#[test]
fn a_window_fires_when_the_watermark_reaches_end_minus_one() {
    // max_delay 0: the watermark after an event at t is t - 1.
    let events = [ev("a", 0, 1), ev("a", 9, 1), ev("a", 10, 1), ev("a", 11, 1)];
    let after = firings_after_each(&events, TUMBLING_10, 0);
    assert!(
        after[0].is_empty() && after[1].is_empty(),
        "watermark 8 < 9: not yet"
    );
    assert_eq!(
        after[2],
        vec![(0, 10, 2.into())],
        "watermark 9 = end - 1: fires, with ts 9 in it"
    );
    assert_eq!(after[3], vec![(0, 10, 2.into())], "fires once");
}

#[test]
fn the_boundary_event_at_end_belongs_to_the_next_window() {
    let r = run(
        &[ev("a", 9, 1), ev("a", 10, 1)],
        TUMBLING_10,
        0,
        0,
        1,
        AggregateKind::Count,
    );
    let finals = r.finals("count");
    assert_eq!(finals[&("a".into(), 0, 10)], 1);
    assert_eq!(finals[&("a".into(), 10, 20)], 1);
}

#[test]
fn keys_whose_windows_fire_in_the_middle_of_a_batch_serve_its_later_events() {
    // One batch: 9000 keys open [0, 10); an event at 20 fires them all (and their keys
    // are forgotten), and the same keys then open [20, 30).
    let keys: Vec<String> = (0..9000).map(|i| format!("key-{i}")).collect();
    let mut events: Vec<Ev> = keys.iter().map(|k| ev(k, 0, 1)).collect();
    events.push(ev("other", 20, 1));
    events.extend(keys.iter().map(|k| ev(k, 20, 1)));
    let r = run(
        &events,
        TUMBLING_10,
        0,
        0,
        events.len(),
        AggregateKind::Count,
    );
    let finals = r.finals("count");
    assert_eq!(finals.len(), 2 * 9000 + 1);
    for key in &keys {
        assert_eq!(finals[&(key.clone(), 0, 10)], 1, "{key}");
        assert_eq!(finals[&(key.clone(), 20, 30)], 1, "{key}");
    }
}

#[test]
fn open_windows_keep_their_keys_when_the_key_arena_is_compacted_between_batches() {
    // Tumbling [10, 20) windows and sessions of gap 5 ([15, 20), then [15, 21)) both hold
    // the staying keys across the compaction.
    for (assigner, window) in [
        (TUMBLING_10, (10, 20)),
        (Assigner::Session { gap: 5 }, (15, 21)),
    ] {
        let mut h = Harness::new(assigner, 0, AggregateKind::Count, 1, 0, None);
        let stay: Vec<String> = (0..500)
            .map(|i| format!("stay-{i}-{}", "s".repeat(i % 40)))
            .collect();
        // Keys of sizes of their own, whose windows fire within the batch: their entries
        // become garbage no later key reuses, so the batch ends with a compaction.
        let mut events: Vec<Ev> = (0..2000).map(|i| ev(&"g".repeat(1000 + i), 5, 1)).collect();
        events.push(ev("trigger", 12, 1)); // watermark 11: the windows at 5 fire
        events.extend(stay.iter().map(|k| ev(k, 15, 1)));
        h.feed(0, &events);
        assert!(
            h.op.key_bytes() < 1 << 20,
            "compacted: {} bytes of keys",
            h.op.key_bytes()
        );
        let again: Vec<Ev> = stay.iter().map(|k| ev(k, 16, 1)).collect();
        h.feed(0, &again);
        h.finish();
        let r = Run {
            firings: records(h.out.records()),
            late: records(h.late.records()),
            counters: h.op.counters(),
        };
        assert!(r.late.is_empty());
        assert_eq!(r.counters.firings, 2000 + 1 + 500, "one result per window");
        let finals = r.finals("count");
        for key in &stay {
            assert_eq!(
                finals[&(key.clone(), window.0, window.1)],
                2,
                "{key}: both events in one window"
            );
        }
    }
}

#[test]
fn late_events_are_judged_at_the_lateness_limit() {
    // Window [0,10) has max timestamp 9; with lateness 5 it is late once the watermark is 14.
    let base = [ev("a", 1, 1), ev("a", 14, 0)]; // watermark 13 after the second event
    let r = run(
        &[&base[..], &[ev("a", 3, 10)]].concat(),
        TUMBLING_10,
        5,
        0,
        1,
        AggregateKind::Sum,
    );
    assert!(r.late.is_empty(), "9 + 5 <= 13 is false: still accepted");
    assert_eq!(r.counters.late_accepted, 1);
    let sums: Vec<(i64, Value)> = r
        .firings
        .iter()
        .map(|f| (f["window_start"].as_i64().unwrap(), f["sum"].clone()))
        .collect();
    assert_eq!(
        sums,
        vec![(0, 1.into()), (0, 11.into()), (10, 0.into())],
        "fired, then fired again with the full result"
    );

    let base = [ev("a", 1, 1), ev("a", 15, 0)]; // watermark 14
    let r = run(
        &[&base[..], &[ev("a", 3, 10)]].concat(),
        TUMBLING_10,
        5,
        0,
        1,
        AggregateKind::Sum,
    );
    assert_eq!(r.late_events(), vec![(3, 10)], "9 + 5 <= 14: late");
    assert_eq!(r.late[0]["window_start"], 0);
    assert_eq!(r.late[0]["window_end"], 10);
    assert!(r.late[0]["reason"].as_str().unwrap().starts_with("late"));
    assert_eq!(r.finals("sum")[&("a".into(), 0, 10)], 1);
}

#[test]
fn a_window_first_seen_within_its_lateness_fires_once_per_event_as_in_flink() {
    // Watermark 19 after ts 20; [0,10) has no state yet but 9 + 15 > 19: not late. It
    // fires on the element, and not again when the watermark moves on.
    let events = [ev("a", 20, 1), ev("a", 5, 1), ev("a", 40, 1)];
    let r = run(&events, TUMBLING_10, 15, 0, 1, AggregateKind::Count);
    let first_window: Vec<&Value> = r
        .firings
        .iter()
        .filter(|f| f["window_start"] == 0)
        .collect();
    assert_eq!(first_window.len(), 1, "{:?}", r.firings);
    assert_eq!(r.counters.late_accepted, 1);
}

#[test]
fn without_lateness_an_event_for_a_fired_window_is_late() {
    let r = run(
        &[ev("a", 5, 1), ev("a", 20, 1), ev("a", 9, 7)],
        TUMBLING_10,
        0,
        0,
        1,
        AggregateKind::Count,
    );
    assert_eq!(r.late_events(), vec![(9, 7)]);
    assert_eq!(r.counters.late_rejected, 1);
}

#[test]
fn sessions_merge_when_an_event_bridges_them() {
    let session = Assigner::Session { gap: 10 };
    // max_delay 100 keeps everything on time.
    let events = [
        ev("a", 0, 1),
        ev("a", 20, 2),
        ev("b", 5, 4),
        ev("a", 10, 3),
        ev("a", 45, 5),
    ];
    let r = run(&events, session, 0, 100, 1, AggregateKind::Sum);
    let finals = r.finals("sum");
    assert_eq!(finals.len(), 3, "{finals:?}");
    assert_eq!(
        finals[&("a".into(), 0, 30)],
        6,
        "[0,10) + [10,20) + [20,30) merged"
    );
    assert_eq!(finals[&("a".into(), 45, 55)], 5);
    assert_eq!(finals[&("b".into(), 5, 15)], 4);
}

#[test]
fn sliding_windows_count_each_event_in_every_window_it_falls_in() {
    let sliding = Assigner::Sliding {
        size: 10,
        slide: 5,
        offset: 0,
    };
    let r = run(
        &[ev("a", 7, 1), ev("a", 12, 1)],
        sliding,
        0,
        0,
        1,
        AggregateKind::Count,
    );
    let finals = r.finals("count");
    assert_eq!(finals[&("a".into(), 0, 10)], 1);
    assert_eq!(finals[&("a".into(), 5, 15)], 2);
    assert_eq!(finals[&("a".into(), 10, 20)], 1);
    assert_eq!(finals.len(), 3);
}

#[test]
fn every_aggregate_over_one_window() {
    let events = [ev("a", 1, 4), ev("a", 2, -2), ev("a", 3, 7)];
    let result = |kind: AggregateKind| {
        run(&events, TUMBLING_10, 0, 0, 8, kind).finals(kind.name())[&("a".into(), 0, 10)].clone()
    };
    assert_eq!(result(AggregateKind::Count), 3);
    assert_eq!(result(AggregateKind::Sum), 9);
    assert_eq!(result(AggregateKind::Min), -2);
    assert_eq!(result(AggregateKind::Max), 7);
    assert_eq!(result(AggregateKind::Avg), 3);
}

#[test]
fn an_idle_partition_stops_holding_back_windows_and_a_woken_one_is_judged_by_the_new_watermark() {
    let start = Instant::now();
    let idle = Some(Duration::from_millis(100));
    let mut h = Harness::new(TUMBLING_10, 0, AggregateKind::Count, 2, 0, idle);
    h.feed(0, &[ev("a", 1, 0)]);
    h.feed(1, &[ev("a", 2, 0)]);
    std::thread::sleep(Duration::from_millis(150));
    h.feed(0, &[ev("a", 50, 0)]);
    assert!(
        h.out.is_empty(),
        "partition 1 (at 2) holds the watermark at 1"
    );
    assert!(
        !h.watermarks.tick(start + Duration::from_millis(90)),
        "nothing is idle yet"
    );
    assert!(
        h.watermarks
            .tick(Instant::now() + Duration::from_millis(50)),
        "partition 1 goes idle, partition 0 does not"
    );
    h.op.advance(
        &EventBatch::default(),
        h.watermarks.current(),
        &mut Results::new(&mut h.out, None),
    )
    .unwrap();
    assert_eq!(
        records(h.out.records()).len(),
        1,
        "window [0,10) fires without partition 1"
    );
    h.feed(1, &[ev("a", 5, 0)]);
    assert_eq!(
        records(h.late.records()).len(),
        1,
        "the woken partition's old event is late"
    );
}

/// Streams of events whose disorder stays strictly within `max_delay`: every event is
/// later than the highest time seen so far minus `max_delay`.
fn bounded_disorder(max_delay: i64) -> impl Strategy<Value = Vec<Ev>> {
    prop::collection::vec(
        (0..4usize, 0..30i64, -max_delay + 1..=0i64, 0..100i64),
        1..120,
    )
    .prop_map(move |steps| {
        let mut max = 0i64;
        steps
            .into_iter()
            .map(|(key, advance, back, amount)| {
                max += advance;
                (format!("k{key}"), max + back, amount)
            })
            .collect()
    })
}

fn assigners() -> impl Strategy<Value = Assigner> {
    prop_oneof![
        (1..60i64, 0..10i64).prop_map(|(size, offset)| Assigner::Tumbling {
            size,
            offset: offset % size
        }),
        (1..60i64, 1..60i64).prop_map(|(size, slide)| Assigner::Sliding {
            size,
            slide,
            offset: 0
        }),
        (1..40i64).prop_map(|gap| Assigner::Session { gap }),
    ]
}

fn aggregates() -> impl Strategy<Value = AggregateKind> {
    prop_oneof![
        Just(AggregateKind::Count),
        Just(AggregateKind::Sum),
        Just(AggregateKind::Min),
        Just(AggregateKind::Max),
        Just(AggregateKind::Avg),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn disorder_within_the_bound_gives_the_results_of_the_sorted_stream(
        events in bounded_disorder(40),
        assigner in assigners(),
        aggregate in aggregates(),
        batch in 1..20usize,
    ) {
        let mut sorted = events.clone();
        sorted.sort_by_key(|e| e.1);
        let shuffled = run(&events, assigner, 0, 40, batch, aggregate);
        let in_order = run(&sorted, assigner, 0, 40, batch, aggregate);
        prop_assert!(shuffled.late.is_empty());
        prop_assert_eq!(shuffled.finals(aggregate.name()), in_order.finals(aggregate.name()));
    }

    #[test]
    fn batch_size_never_changes_final_results_or_late_events(
        events in prop::collection::vec((0..3usize, 0..200i64, 0..50i64), 1..150),
        assigner in assigners(),
        aggregate in aggregates(),
        lateness in prop_oneof![Just(0i64), 1..30i64],
        max_delay in 0..20u64,
    ) {
        let events: Vec<Ev> = events.into_iter().map(|(k, ts, a)| (format!("k{k}"), ts, a)).collect();
        let runs: Vec<Run> = [1, 7, 8192].iter().map(|&b| run(&events, assigner, lateness, max_delay, b, aggregate)).collect();
        let name = aggregate.name();
        for r in &runs[1..] {
            prop_assert_eq!(r.finals(name), runs[0].finals(name));
            prop_assert_eq!(r.late_events(), runs[0].late_events());
        }
        // Nothing vanishes: every event is in a window result or in the late output.
        // (Tumbling only: a sliding window counts an event several times, and a session
        // that fired and then grew by merging leaves its earlier result behind, as in Flink.)
        if aggregate == AggregateKind::Count && matches!(assigner, Assigner::Tumbling { .. }) {
            let counted: i64 = runs[0].finals(name).values().map(|v| v.as_i64().unwrap()).sum();
            prop_assert_eq!(counted + runs[0].late.len() as i64, events.len() as i64);
        }
    }
}

#[test]
fn the_end_of_input_fires_every_open_window() {
    let r = run(
        &[ev("a", 5, 1), ev("b", 1000, 1)],
        TUMBLING_10,
        0,
        1_000_000,
        1,
        AggregateKind::Count,
    );
    assert_eq!(r.firings.len(), 2);
}

#[test]
fn incremental_snapshots_rebuild_the_full_state() {
    use crate::checkpoint::{flatten, Snapshot};
    use crate::window::WindowSnapshot;
    let events: Vec<Ev> = (0..400)
        .map(|i: i64| {
            (
                format!("k{}", (i * 7) % 13),
                (i * 37) % 500 + i,
                (i % 9) - 4,
            )
        })
        .collect();
    for (assigner, lateness) in [(TUMBLING_10, 5), (Assigner::Session { gap: 7 }, 3)] {
        let mut h = Harness::new(assigner, lateness, AggregateKind::Sum, 1, 20, None);
        h.op = std::mem::replace(
            &mut h.op,
            Harness::new(assigner, lateness, AggregateKind::Sum, 1, 20, None).op,
        )
        .with_spec("spec".into());
        h.op.track_changes();
        let mut chain = Vec::new();
        for (n, chunk) in events.chunks(37).enumerate() {
            h.feed(0, chunk);
            let incremental = n > 0;
            chain.push(Snapshot {
                id: n as u64 + 1,
                base: incremental.then_some(n as u64),
                sections: vec![h.op.state(incremental).into_section().unwrap()],
                ..Snapshot::default()
            });
        }
        assert!(
            chain
                .iter()
                .skip(1)
                .any(|s| !s.sections[0].removed.is_empty()),
            "some windows closed"
        );
        let full = flatten(chain).unwrap();
        let mut restored = Harness::new(assigner, lateness, AggregateKind::Sum, 1, 20, None)
            .op
            .with_spec("spec".into());
        restored.restore(full.section("window").unwrap()).unwrap();
        let sorted = |mut s: WindowSnapshot| {
            s.windows
                .sort_by(|a, b| (&a.0, a.1, a.2).cmp(&(&b.0, b.1, b.2)));
            s.windows
        };
        assert_eq!(
            sorted(restored.state(false)),
            sorted(h.op.state(false)),
            "{assigner:?}"
        );
        assert!(h.op.open_windows() > 0);
    }
}

#[test]
fn a_key_cannot_hold_more_open_windows_than_its_bound() {
    // A huge allowed lateness keeps every window open.
    let mut h = Harness::new(TUMBLING_10, 1_000_000, AggregateKind::Count, 1, 0, None);
    h.op = std::mem::replace(
        &mut h.op,
        Harness::new(TUMBLING_10, 1_000_000, AggregateKind::Count, 1, 0, None).op,
    )
    .with_max_open_windows_per_key(3);
    h.feed(
        0,
        &[
            ev("a", 5, 1),
            ev("a", 15, 1),
            ev("a", 25, 1),
            ev("a", 27, 1),
        ],
    );
    h.feed(0, &[ev("a", 35, 1), ev("b", 35, 1), ev("a", 8, 1)]);
    assert_eq!(h.op.open_windows(), 4, "a: 3 windows, b: 1");
    assert_eq!(h.dead.len(), 1, "a's fourth window");
    let dead = records(h.dead.records());
    assert_eq!(dead[0]["value"]["ts"], 35);
    assert!(dead[0]["reason"]
        .as_str()
        .unwrap()
        .contains("max_open_windows_per_key = 3"));
}

#[test]
fn a_large_firing_is_handed_on_in_chunks_in_order() {
    // 80k keys in one window: ~5 MB of results fire at once, several chunks' worth.
    let events: Vec<Ev> = (0..80_000)
        .map(|k| ev(&format!("key-{k:06}"), 1, 1))
        .collect();
    let run = |spill: bool| {
        let mut h = Harness::new(TUMBLING_10, 0, AggregateKind::Count, 1, 0, None);
        if spill {
            h.spilled = Some(Vec::new());
        }
        h.feed(0, &events);
        h.finish();
        let chunks = h.spilled.take().unwrap_or_default();
        let mut all: Vec<Vec<u8>> = chunks.iter().flatten().cloned().collect();
        all.extend(h.out.records().iter().map(<[u8]>::to_vec));
        (chunks, all, h.out.byte_len())
    };
    let (none, whole, gathered) = run(false);
    let (chunks, spilled, left) = run(true);
    assert!(none.is_empty());
    assert!(
        gathered > SPILL_BYTES,
        "the firing is a burst: {gathered} bytes"
    );
    assert_eq!(spilled, whole, "the same results in the same order");
    assert_eq!(
        chunks.len(),
        gathered / SPILL_BYTES,
        "chunks of about SPILL_BYTES"
    );
    for chunk in &chunks {
        let bytes: usize = chunk.iter().map(Vec::len).sum();
        assert!((SPILL_BYTES..SPILL_BYTES + 100).contains(&bytes), "{bytes}");
    }
    assert!(left < SPILL_BYTES, "then the rest");
}

#[test]
fn a_firing_that_fails_midway_leaves_the_windows_it_closed_out_of_the_state() {
    // 20k keys in one window: their results pass SPILL_BYTES, and the spill fails then.
    let events: Vec<Ev> = (0..20_000)
        .map(|k| ev(&format!("key-{k:06}"), 1, 1))
        .collect();
    let mut h = Harness::new(TUMBLING_10, 0, AggregateKind::Count, 1, 0, None);
    h.feed(0, &events);
    assert_eq!(h.op.open_windows(), 20_000);
    let mut failing = |_: crate::batch::Records<'_>| anyhow::bail!("the sink is down");
    let failed = h.op.process(
        &EventBatch::default(),
        100,
        &mut Results::new(&mut h.out, Some(&mut failing)),
        &mut h.late,
        &mut h.dead,
    );
    assert!(failed.is_err());
    let closed = 20_000 - h.op.open_windows();
    assert!(closed > 0, "windows closed before the failure");
    let state = h.op.state(false);
    assert_eq!(
        state.windows.len(),
        h.op.open_windows(),
        "the state lists exactly the windows still open"
    );
    // The operator goes on: a new window opens, in the slot of a closed one, and fires.
    let open = h.op.open_windows();
    h.out.clear();
    h.feed(0, &[ev("key-000000", 125, 1)]); // past the watermark of 100
    assert_eq!(h.op.open_windows(), open + 1);
    h.feed(0, &[ev("key-000001", 145, 1)]);
    let fired = records(h.out.records());
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0]["window_start"], 120);
    assert_eq!(h.op.state(false).windows.len(), h.op.open_windows());
}
