//! Checkpoint cost by state size: keyed window state of 10k, 1M and 5M keys (one open
//! window each, a `count`). One run each, printed; `cargo bench -p eddy --bench checkpoint`.
//!
//! - pause: copying the operator's state at a batch boundary (the stream waits for this),
//! - write: encoding, writing, fsyncing and renaming the checkpoint file (on the writer
//!   thread, while the stream goes on),
//! - recovery: reading, verifying and decoding the file, and restoring an operator.

use std::time::Instant;

use eddy::batch::{EventBatch, Origin};
use eddy::checkpoint::{self, CheckpointDir, Checkpointed, Snapshot};
use eddy::config::AggregateKind;
use eddy::dead_letter::DeadLetters;
use eddy::sink::RecordBuffer;
use eddy::window::{Assigner, Builtin, Results, WindowOperator};

fn operator() -> WindowOperator {
    let assigner = Assigner::Tumbling {
        size: 3_600_000,
        offset: 0,
    };
    let mut op = WindowOperator::new(
        assigner,
        0,
        Box::new(Builtin::new(AggregateKind::Count, None)),
    );
    op.track_changes();
    op
}

/// Feeds one event per key, in the same hour-long window, 100k at a time.
fn feed(op: &mut WindowOperator, keys: impl Iterator<Item = u64>) {
    let (mut out, mut late, mut dead) = (
        RecordBuffer::default(),
        DeadLetters::default(),
        DeadLetters::default(),
    );
    let mut batch = EventBatch::default();
    let keys: Vec<u64> = keys.collect();
    for chunk in keys.chunks(100_000) {
        batch.clear();
        for &k in chunk {
            let origin = Origin {
                partition: 0,
                position: k,
                watermark: i64::MIN,
            };
            batch.push(origin, format!("user-{k}").as_bytes(), 1_000, b"{}");
        }
        let mut results = Results::new(&mut out, None);
        op.process(&batch, i64::MIN, &mut results, &mut late, &mut dead)
            .unwrap();
    }
}

fn main() {
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"checkpoint".contains(&a))
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointDir::open(dir.path(), 2).unwrap();
    for keys in [10_000u64, 1_000_000, 5_000_000] {
        let mut op = operator();
        feed(&mut op, 0..keys);
        let started = Instant::now();
        let window = op.snapshot(keys, false).unwrap().unwrap();
        let pause = started.elapsed();
        let snapshot = Snapshot {
            id: keys,
            sections: vec![window],
            ..Snapshot::default()
        };
        let started = Instant::now();
        let path = store.write(&snapshot).unwrap();
        let write = started.elapsed();
        let size = std::fs::metadata(&path).unwrap().len();
        let started = Instant::now();
        let (read, _) = checkpoint::read_snapshot(&path).unwrap();
        let decode = started.elapsed();
        let mut restored = operator();
        restored.restore(read.section("window").unwrap()).unwrap();
        let recovery = started.elapsed();
        assert_eq!(restored.open_windows() as u64, keys);
        // An incremental checkpoint after 1% of the keys changed.
        feed(&mut op, (0..keys).step_by(100));
        let started = Instant::now();
        let delta = op.snapshot(keys + 1, true).unwrap().unwrap();
        let delta_pause = started.elapsed();
        let delta_snapshot = Snapshot {
            id: keys + 1,
            base: Some(keys),
            sections: vec![delta],
            ..Snapshot::default()
        };
        let started = Instant::now();
        let delta_path = store.write(&delta_snapshot).unwrap();
        let delta_write = started.elapsed();
        let delta_size = std::fs::metadata(&delta_path).unwrap().len();
        println!(
            "{keys} keys: pause {:.1} ms, write {:.0} ms, {:.1} MB ({:.0} bytes/key), recovery {:.0} ms (read + decode {:.0} ms); \
             incremental after 1% changed: pause {:.2} ms, write {:.0} ms, {:.2} MB",
            pause.as_secs_f64() * 1e3,
            write.as_secs_f64() * 1e3,
            size as f64 / 1e6,
            size as f64 / keys as f64,
            recovery.as_secs_f64() * 1e3,
            decode.as_secs_f64() * 1e3,
            delta_pause.as_secs_f64() * 1e3,
            delta_write.as_secs_f64() * 1e3,
            delta_size as f64 / 1e6
        );
    }
}
