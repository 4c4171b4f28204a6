//! The generator source: a seeded, synthetic payments stream, the embedded default for
//! demos, tests and benchmarks.
//!
//! Event `seq` is a pure function of `(seed, seq)`, so the same seed gives the same stream
//! and any run can be checked for loss and duplicates by its `seq` numbers:
//! `{"seq":0,"ts":1700000000000,"user":"user-17","card":"card-17-1","amount":42.17,"country":"DE"}`.
//! Event time advances 1 ms per event (or `1000 / rate` ms with a rate) and each event's
//! time is moved back by up to `max_disorder`.

mod config;

pub use config::GeneratorConfig;

use std::time::{Duration, Instant};

use anyhow::Result;

use super::{Ingest, Source, SourcePosition, SourceState};

const COUNTRIES: [&str; 8] = ["DE", "FR", "US", "GB", "NL", "ES", "IT", "PL"];

/// Generates the payments stream.
pub struct Generator {
    config: GeneratorConfig,
    next_seq: u64,
    /// When the first event of this run was due, and its `seq` (a resumed run starts
    /// its rate schedule from where it resumed).
    started: Option<(Instant, u64)>,
    key: Vec<u8>,
}

impl Generator {
    /// A generator that starts at `seq` 0.
    pub fn new(config: GeneratorConfig) -> Self {
        Self {
            next_seq: config.share.0,
            config,
            started: None,
            key: Vec::with_capacity(32),
        }
    }

    /// When event `seq` is due, for a rate-limited generator.
    fn due(&self, (started, first): (Instant, u64), seq: u64) -> Option<Instant> {
        let rate = self.config.rate?;
        Some(started + Duration::from_secs_f64((seq - first) as f64 / rate))
    }

    /// Writes event `seq` into the batch.
    fn emit(&mut self, ingest: &mut Ingest<'_>, seq: u64) {
        let c = &self.config;
        let h = splitmix64(c.seed ^ splitmix64(seq));
        let user = h % c.keys;
        let card = (h >> 20) % 3;
        let cents = if (h >> 28) & 15 == 0 {
            1 + (h >> 32) % 200_000
        } else {
            1 + (h >> 32) % 10_000
        };
        let country = COUNTRIES[((h >> 40) % COUNTRIES.len() as u64) as usize];
        let step = c.rate.map_or(seq as f64, |rate| seq as f64 * 1000.0 / rate);
        let disorder = match c.max_disorder.as_millis() {
            0 => 0,
            max => ((h >> 48) % (max as u64 + 1)) as i64,
        };
        let ts = c.start_ts + step as i64 - disorder;

        let mut num = itoa::Buffer::new();
        let out = ingest.values_mut();
        out.extend_from_slice(b"{\"seq\":");
        out.extend_from_slice(num.format(seq).as_bytes());
        out.extend_from_slice(b",\"ts\":");
        out.extend_from_slice(num.format(ts).as_bytes());
        out.extend_from_slice(b",\"user\":\"user-");
        out.extend_from_slice(num.format(user).as_bytes());
        out.extend_from_slice(b"\",\"card\":\"card-");
        out.extend_from_slice(num.format(user).as_bytes());
        out.push(b'-');
        out.extend_from_slice(num.format(card).as_bytes());
        out.extend_from_slice(b"\",\"amount\":");
        out.extend_from_slice(num.format(cents / 100).as_bytes());
        out.push(b'.');
        out.push(b'0' + (cents % 100 / 10) as u8);
        out.push(b'0' + (cents % 10) as u8);
        out.extend_from_slice(b",\"country\":\"");
        out.extend_from_slice(country.as_bytes());
        out.extend_from_slice(b"\"}");

        self.key.clear();
        if c.key_field == "card" {
            self.key.extend_from_slice(b"card-");
            self.key.extend_from_slice(num.format(user).as_bytes());
            self.key.push(b'-');
            self.key.extend_from_slice(num.format(card).as_bytes());
        } else {
            self.key.extend_from_slice(b"user-");
            self.key.extend_from_slice(num.format(user).as_bytes());
        }
        let partition = (seq % u64::from(c.partitions)) as u32;
        ingest.push_written(partition, seq, &self.key, ts);
    }
}

impl Source for Generator {
    fn describe(&self) -> String {
        format!("generator(seed={})", self.config.seed)
    }

    fn partitions(&self) -> u32 {
        self.config.partitions
    }

    fn position(&self) -> SourcePosition {
        SourcePosition::Generator {
            next_seq: self.next_seq,
        }
    }

    fn seek(&mut self, position: &SourcePosition) -> Result<()> {
        let &SourcePosition::Generator { next_seq } = position else {
            anyhow::bail!("{} cannot resume from {position:?}", self.describe());
        };
        self.next_seq = next_seq;
        Ok(())
    }

    fn poll(
        &mut self,
        ingest: &mut Ingest<'_>,
        max: usize,
        deadline: Instant,
    ) -> Result<SourceState> {
        let next = self.next_seq;
        let started = *self.started.get_or_insert_with(|| (Instant::now(), next));
        for _ in 0..max {
            let seq = self.next_seq;
            if self.config.count.is_some_and(|count| seq >= count) {
                return Ok(SourceState::Exhausted);
            }
            if let Some(due) = self.due(started, seq) {
                let now = Instant::now();
                if due > now {
                    if due > deadline {
                        std::thread::sleep(deadline.saturating_duration_since(now));
                        return Ok(SourceState::Open);
                    }
                    std::thread::sleep(due - now);
                }
            }
            self.emit(ingest, seq);
            self.next_seq += self.config.share.1;
        }
        let exhausted = self
            .config
            .count
            .is_some_and(|count| self.next_seq >= count);
        Ok(if exhausted {
            SourceState::Exhausted
        } else {
            SourceState::Open
        })
    }
}

/// SplitMix64: a fast, well-mixed hash of a 64-bit value.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::EventBatch;
    use crate::config::{ConfigDuration, EventFields};
    use crate::dead_letter::DeadLetters;
    use crate::watermark::Watermarks;

    fn generate(config: GeneratorConfig, max: usize) -> (EventBatch, SourceState) {
        let mut batch = EventBatch::default();
        let mut dead = DeadLetters::default();
        let fields = EventFields::default();
        let mut watermarks = Watermarks::new(1, Duration::ZERO, None);
        let mut ingest = Ingest::new(&mut batch, &mut dead, &fields, &mut watermarks);
        let state = Generator::new(config)
            .poll(&mut ingest, max, Instant::now())
            .unwrap();
        (batch, state)
    }

    #[test]
    fn events_are_valid_json_with_every_field() {
        let config = GeneratorConfig {
            count: Some(100),
            partitions: 4,
            ..Default::default()
        };
        let (batch, state) = generate(config.clone(), 1000);
        assert_eq!(state, SourceState::Exhausted);
        assert_eq!(batch.len(), 100);
        for i in 0..batch.len() {
            let v: serde_json::Value = serde_json::from_slice(batch.value(i)).unwrap();
            assert_eq!(v["seq"], i as u64);
            assert_eq!(v["ts"], config.start_ts + i as i64);
            assert_eq!(batch.key(i), v["user"].as_str().unwrap().as_bytes());
            assert!(v["card"].as_str().unwrap().starts_with("card-"));
            assert!(v["amount"].as_f64().unwrap() > 0.0);
            assert_eq!(v["country"].as_str().unwrap().len(), 2);
            assert_eq!(batch.origins[i].partition, (i % 4) as u32);
            assert_eq!(batch.origins[i].position, i as u64);
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_stream() {
        let config = |seed| GeneratorConfig {
            count: Some(50),
            seed,
            ..Default::default()
        };
        assert_eq!(
            generate(config(1), 50).0.columns.values,
            generate(config(1), 50).0.columns.values
        );
        assert_ne!(
            generate(config(1), 50).0.columns.values,
            generate(config(2), 50).0.columns.values
        );
    }

    #[test]
    fn disorder_stays_within_its_bound() {
        let config = GeneratorConfig {
            count: Some(2000),
            max_disorder: ConfigDuration::parse("20ms").unwrap(),
            ..Default::default()
        };
        let (batch, _) = generate(config.clone(), 2000);
        let mut moved = 0;
        for (i, &ts) in batch.columns.timestamps.iter().enumerate() {
            let place = config.start_ts + i as i64;
            assert!(ts <= place && ts >= place - 20);
            moved += usize::from(ts != place);
        }
        assert!(moved > 1000);
    }

    #[test]
    fn keys_can_be_cards() {
        let config = GeneratorConfig {
            count: Some(5),
            key_field: "card".into(),
            ..Default::default()
        };
        let (batch, _) = generate(config, 5);
        let v: serde_json::Value = serde_json::from_slice(batch.value(0)).unwrap();
        assert_eq!(batch.key(0), v["card"].as_str().unwrap().as_bytes());
    }
}
