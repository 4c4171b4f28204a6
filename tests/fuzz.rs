//! Fuzzing on stable Rust: property-based fuzz targets for the three decoders that read
//! what users and disks hand Eddy — the record decoder (JSON lines), the pipeline-file
//! parser and the checkpoint decoder. Each must answer any input with a value or an
//! error, never a panic, an abort or a runaway allocation.
//!
//! The suite runs a bounded number of cases (seconds). For a longer run, raise the count:
//! `EDDY_FUZZ_CASES=200000 cargo test --release --test fuzz` (docs/operator-safety.md).

use eddy::batch::EventBatch;
use eddy::checkpoint::{self, Section, Snapshot};
use eddy::config::{EventFields, PipelineConfig};
use eddy::dead_letter::DeadLetters;
use eddy::source::{Ingest, SourceRecord};
use eddy::watermark::Watermarks;
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("EDDY_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000)
}

/// Bytes shaped like records: mostly JSON punctuation, digits, the fields Eddy reads, and
/// some arbitrary bytes (invalid UTF-8 included).
fn record_bytes() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"{".to_vec()),
        Just(b"}".to_vec()),
        Just(b"[".to_vec()),
        Just(b"]".to_vec()),
        Just(b"\"ts\":".to_vec()),
        Just(b"\"user\":".to_vec()),
        Just(b"\"".to_vec()),
        Just(b",".to_vec()),
        Just(b"\\\\".to_vec()),
        Just(b"-".to_vec()),
        Just(b"1e400".to_vec()),
        Just(b"9223372036854775808".to_vec()),
        Just(b"null".to_vec()),
        "[0-9]{1,20}".prop_map(String::into_bytes),
        any::<u8>().prop_map(|b| vec![b]),
    ];
    prop::collection::vec(token, 0..40).prop_map(|parts| parts.concat())
}

/// A valid pipeline file, to mutate.
const PIPELINE: &str = r#"[source]
kind = "generator"
count = 10
[watermark]
max_delay = "5s"
[window]
kind = "sliding"
size = "1m"
slide = "10s"
aggregate = "sum"
field = "amount"
[sink]
kind = "file"
path = "out.jsonl"
[checkpoint]
dir = "state"
interval = "1s"
[batch]
max_records = 64
max_wait = "10ms"
"#;

fn sample_checkpoint() -> Vec<u8> {
    let mut window = Section::new("window", 1)
        .with_meta(&("spec", 5i64, [1u64; 4]))
        .unwrap();
    window.entries = vec![(checkpoint::window_key(b"k", 0, 10), vec![0, 3])];
    checkpoint::encode(&Snapshot {
        id: 3,
        sections: vec![
            Section::new("source", 1)
                .with_meta(&("file:x", 1u32))
                .unwrap(),
            window,
        ],
        ..Snapshot::default()
    })
    .unwrap()
}

/// A checkpoint file around `payload`, with a correct length and checksum, so the decoder
/// gets past the header to the payload itself.
fn framed(version: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = b"EDDYCKPT".to_vec();
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn the_record_decoder_answers_every_input(line in record_bytes()) {
        let fields = EventFields {
            time_field: Some("ts".into()),
            key_field: Some("user".into()),
            max_future_ms: Some(86_400_000),
        };
        let mut batch = EventBatch::default();
        let mut dead = DeadLetters::new("fuzz");
        let mut watermarks = Watermarks::new(1, std::time::Duration::ZERO, None);
        let mut ingest = Ingest::new(&mut batch, &mut dead, &fields, &mut watermarks);
        ingest.push_record(0, 1, SourceRecord { value: &line, ..SourceRecord::default() });
        prop_assert_eq!(batch.len() + dead.len(), 1);
        // What is kept is UTF-8 JSON; what is not is a dead letter that is valid JSON.
        if batch.len() == 1 {
            prop_assert!(serde_json::from_slice::<serde_json::Value>(batch.value(0)).is_ok());
        } else {
            let record = dead.records().get(0);
            prop_assert!(serde_json::from_slice::<serde_json::Value>(record).is_ok());
        }
    }

    #[test]
    fn the_pipeline_parser_answers_every_input(
        cut in 0..PIPELINE.len(),
        junk in "[a-z_=\"\\[\\]{}0-9 .\\n-]{0,30}",
    ) {
        // A valid file with a piece replaced by junk.
        let end = (cut + junk.len()).min(PIPELINE.len());
        let mut text = PIPELINE.to_owned();
        if text.is_char_boundary(cut) && text.is_char_boundary(end) {
            text.replace_range(cut..end, &junk);
        }
        let _ = PipelineConfig::parse(&text);
    }

    #[test]
    fn the_checkpoint_decoder_answers_every_input(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
        payload in prop::collection::vec(any::<u8>(), 0..200),
        version in 1u32..3,
    ) {
        // A valid file with bytes flipped and cut short.
        let mut bytes = sample_checkpoint();
        for (at, bits) in &flips {
            let i = at.index(bytes.len());
            bytes[i] ^= bits;
        }
        let _ = checkpoint::decode(&bytes[..cut.index(bytes.len() + 1)]);
        // Arbitrary payloads behind a header that checks out, for both formats.
        let _ = checkpoint::decode(&framed(version, &payload));
    }
}
