//! `filter`: keeps the events whose field compares true against a value.
//!
//! Config: `field` (a top-level field of the event), `op` (one of `== != < <= > >=`) and
//! `value`. Numbers compare as numbers when both sides are numbers, otherwise as text.
//! An event without the field is rejected to the dead-letter sink.
//!
//! ```toml
//! [[plugin]]
//! name = "big-spenders"
//! path = "filter.wasm"
//! config = { field = "amount", op = ">=", value = "100" }
//! ```

use std::cmp::Ordering;

use eddy_plugin_sdk::{Batch, Config, Event, Filter, Plugin, Selection};

/// The comparison a [`FieldFilter`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Op {
    fn parse(text: &str) -> Result<Self, String> {
        Ok(match text {
            "==" => Op::Eq,
            "!=" => Op::Ne,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            other => {
                return Err(format!(
                    "config key `op` = {other:?}: expected one of == != < <= > >="
                ))
            }
        })
    }

    fn holds(self, ordering: Ordering) -> bool {
        match self {
            Op::Eq => ordering.is_eq(),
            Op::Ne => ordering.is_ne(),
            Op::Lt => ordering.is_lt(),
            Op::Le => ordering.is_le(),
            Op::Gt => ordering.is_gt(),
            Op::Ge => ordering.is_ge(),
        }
    }
}

/// Keeps events where `field op value` holds.
#[derive(Debug, Clone)]
pub struct FieldFilter {
    field: String,
    op: Op,
    text: String,
    number: Option<f64>,
}

/// What the filter decides for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The comparison holds.
    Keep,
    /// The comparison does not hold.
    Drop,
    /// The event has no such field.
    Missing,
}

impl FieldFilter {
    /// The verdict for one event: the whole predicate, read from the event alone (the
    /// native benchmark runs it event by event). `select` gives the same verdicts, reading
    /// a numeric field as one column for the batch.
    #[inline]
    pub fn verdict(&self, event: &Event<'_>) -> Verdict {
        let Some(field) = event.field(&self.field) else {
            return Verdict::Missing;
        };
        let ordering = match (self.number, field.as_f64()) {
            (Some(want), Some(have)) => have.partial_cmp(&want),
            _ => field.as_str().map(|have| (*have).cmp(self.text.as_str())),
        };
        self.judge(ordering)
    }

    /// Keep when the field compared to the value as `op` asks; drop when not, or when
    /// they do not compare.
    fn judge(&self, ordering: Option<Ordering>) -> Verdict {
        match ordering {
            Some(o) if self.op.holds(o) => Verdict::Keep,
            _ => Verdict::Drop,
        }
    }

    /// `select` reading the field event by event: the text comparison, and the native
    /// benchmark (where the column costs more than it saves).
    pub fn select_per_event(&self, batch: &Batch<'_>, out: &mut Selection) {
        for event in batch.iter() {
            self.apply(&event, self.verdict(&event), out);
        }
    }

    /// Keeps, drops or rejects `event`.
    fn apply(&self, event: &Event<'_>, verdict: Verdict, out: &mut Selection) {
        match verdict {
            Verdict::Keep => out.keep(event),
            Verdict::Drop => {}
            Verdict::Missing => out.reject(event, format!("no field `{}`", self.field)),
        }
    }
}

impl Plugin for FieldFilter {
    fn init(config: &Config) -> Result<Self, String> {
        let text = config.require("value")?.to_owned();
        Ok(Self {
            field: config.require("field")?.to_owned(),
            op: Op::parse(config.require("op")?)?,
            number: text.parse().ok(),
            text,
        })
    }
}

impl Filter for FieldFilter {
    fn select(&mut self, batch: &Batch<'_>, out: &mut Selection) {
        let Some(want) = self.number else {
            return self.select_per_event(batch, out);
        };
        // A numeric comparison reads the field as one column, which the host parses.
        let numbers = batch.numbers(&self.field);
        // Only the events kept or judged by their text are looked at as events.
        for (index, &have) in numbers.iter().enumerate() {
            let verdict = if have.is_nan() {
                Verdict::Missing // no such field, or not a number: the text decides
            } else {
                self.judge(have.partial_cmp(&want))
            };
            if verdict == Verdict::Drop {
                continue;
            }
            let event = batch.get(index).expect("a number per event");
            let verdict = match verdict {
                Verdict::Missing => self.verdict(&event),
                kept => kept,
            };
            self.apply(&event, verdict, out);
        }
    }
}

eddy_plugin_sdk::export_filter!(FieldFilter);

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_plugin_sdk::{mock::MockHost, PackedBatch};

    fn run(config: &[(&str, &str)], values: &[&str]) -> (Vec<u32>, Vec<String>) {
        let host = MockHost::new();
        let mut filter = host
            .init::<FieldFilter>(&Config::new(config.iter().copied()))
            .unwrap();
        let batch = PackedBatch::from_events(values.iter().map(|v| ("", 0, *v)));
        let out = host.select(&mut filter, &batch);
        let reasons = out.rejected().iter().map(|r| r.reason.clone()).collect();
        (out.kept().to_vec(), reasons)
    }

    #[test]
    fn compares_numbers() {
        let values = [
            r#"{"amount": 99.5}"#,
            r#"{"amount": 100}"#,
            r#"{"amount": 250.25}"#,
        ];
        let cases = [
            (">=", vec![1, 2]),
            (">", vec![2]),
            ("<", vec![0]),
            ("<=", vec![0, 1]),
            ("==", vec![1]),
            ("!=", vec![0, 2]),
        ];
        for (op, kept) in cases {
            let config = [("field", "amount"), ("op", op), ("value", "100")];
            assert_eq!(run(&config, &values).0, kept, "op {op}");
        }
    }

    #[test]
    fn select_agrees_with_the_verdict_of_each_event() {
        // Three times over: batches under 16 events do not ask the host for the column.
        let values = [
            r#"{"amount": 99.5}"#,
            r#"{"amount": "100"}"#,
            r#"{"other": 1}"#,
            r#"{"amount": 1e3}"#,
            r#"{"am\u006funt": 150}"#,
            r#"{"amount": -0}"#,
            r#"{"amount": [100]}"#,
            r#"{"amount": 100.0}"#,
        ]
        .repeat(3);
        let batch = PackedBatch::from_events(values.iter().map(|v| ("", 0, *v)));
        for op in ["==", "!=", "<", "<=", ">", ">="] {
            let config = [("field", "amount"), ("op", op), ("value", "100")];
            let filter = FieldFilter::init(&Config::new(config)).unwrap();
            let verdicts: Vec<Verdict> = batch.view().iter().map(|e| filter.verdict(&e)).collect();
            let want_kept: Vec<u32> = (0..values.len() as u32)
                .filter(|&i| verdicts[i as usize] == Verdict::Keep)
                .collect();
            let want_rejected = verdicts.iter().filter(|v| **v == Verdict::Missing).count();
            // Through the mock host (the column from the host) and on a plain view (the
            // column parsed by the SDK).
            let (kept, rejected) = run(&config, &values);
            assert_eq!(
                (kept, rejected.len()),
                (want_kept.clone(), want_rejected),
                "op {op}"
            );
            let mut out = Selection::with_capacity(values.len());
            FieldFilter::init(&Config::new(config))
                .unwrap()
                .select(&batch.view(), &mut out);
            assert_eq!(out.kept(), want_kept, "op {op}");
        }
    }

    #[test]
    fn compares_text() {
        let config = [("field", "country"), ("op", "=="), ("value", "DE")];
        let values = [r#"{"country": "DE"}"#, r#"{"country": "FR"}"#];
        assert_eq!(run(&config, &values).0, vec![0]);
    }

    #[test]
    fn rejects_events_without_the_field() {
        let config = [("field", "amount"), ("op", ">"), ("value", "1")];
        let (kept, rejected) = run(&config, &[r#"{"amount": 5}"#, r#"{"other": 5}"#]);
        assert_eq!(kept, vec![0]);
        assert_eq!(rejected, vec!["no field `amount`".to_string()]);
    }

    #[test]
    fn refuses_bad_config() {
        let host = MockHost::new();
        let err = host
            .init::<FieldFilter>(&Config::new([("field", "a"), ("op", "~"), ("value", "1")]))
            .unwrap_err();
        assert!(err.contains("`op`"), "{err}");
        let err = host
            .init::<FieldFilter>(&Config::new([("field", "a"), ("op", "==")]))
            .unwrap_err();
        assert!(err.contains("`value`"), "{err}");
    }
}
