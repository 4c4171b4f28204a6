//! Window aggregates: the built-ins (`count`, `sum`, `min`, `max`, `avg`), which keep a
//! fixed-size accumulator per key and window (never the events), and the interface a
//! Wasm aggregate plugin implements the same way.

use anyhow::Result;

use super::accs::Accs;
use crate::batch::EventBatch;
use crate::config::AggregateKind;

/// The running state of one key and window.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Acc {
    /// Events counted.
    Count(u64),
    /// Running sum.
    Sum(f64),
    /// Smallest value so far.
    Min(f64),
    /// Largest value so far.
    Max(f64),
    /// Sum and count, for the mean.
    Avg {
        /// Running sum.
        sum: f64,
        /// Events counted.
        count: u64,
    },
    /// A Wasm aggregate's accumulator, opaque to the host.
    Bytes(Box<[u8]>),
}

/// An aggregate function over the events of a key and window.
pub trait Aggregator: Send {
    /// The result's field name in output records.
    fn name(&self) -> &str;

    /// The aggregator as its concrete type (for a hot swap of a Wasm aggregate).
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any;

    /// The aggregator as its concrete type (for its status).
    fn as_any(&self) -> &dyn std::any::Any;

    /// A new, empty accumulator.
    fn create(&mut self) -> Result<Acc>;

    /// Reads what the aggregate needs from event `i` (once per event, whatever the number
    /// of its windows); an `Err` is the reason the event cannot be aggregated.
    fn prepare(&self, batch: &EventBatch, i: usize) -> Result<Option<f64>, String>;

    /// Folds event `i` (with what `prepare` read) into `accs[slot]`. May be deferred until
    /// [`Aggregator::flush`].
    fn fold(&mut self, accs: &mut Accs, slot: u32, i: usize, value: Option<f64>);

    /// Completes deferred folds of events of `batch`.
    fn flush(&mut self, batch: &EventBatch, accs: &mut Accs) -> Result<()>;

    /// Merges two accumulators (for sessions that grow together).
    fn merge(&mut self, a: Acc, b: Acc) -> Result<Acc>;

    /// Writes the result of an accumulator as a JSON value.
    fn finish(&mut self, acc: &Acc, out: &mut Vec<u8>) -> Result<()>;

    /// The plugin version computing the aggregate, for a plugin (recorded in the window's
    /// checkpoint section, so a job resumes with the version that was running).
    fn version(&self) -> Option<AggregatorVersion> {
        None
    }
}

/// The version of an aggregate plugin and the config it runs with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AggregatorVersion {
    /// The component's content hash.
    pub hash: String,
    /// Its config.
    pub config: Vec<(String, String)>,
}

/// The built-in aggregates.
#[derive(Debug, Clone)]
pub struct Builtin {
    kind: AggregateKind,
    field: Option<String>,
}

impl Builtin {
    /// A built-in aggregate of `kind` over the numeric `field` (not used by `count`).
    pub fn new(kind: AggregateKind, field: Option<String>) -> Self {
        Self { kind, field }
    }

    /// The accumulator of one event of value `v`.
    fn one(&self, v: f64) -> Acc {
        match self.kind {
            AggregateKind::Count => Acc::Count(1),
            AggregateKind::Sum => Acc::Sum(v),
            AggregateKind::Min => Acc::Min(v),
            AggregateKind::Max => Acc::Max(v),
            AggregateKind::Avg | AggregateKind::Plugin => Acc::Avg { sum: v, count: 1 },
        }
    }
}

impl Aggregator for Builtin {
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn name(&self) -> &str {
        self.kind.name()
    }

    fn create(&mut self) -> Result<Acc> {
        Ok(match self.kind {
            AggregateKind::Count => Acc::Count(0),
            AggregateKind::Sum => Acc::Sum(0.0),
            AggregateKind::Min => Acc::Min(f64::INFINITY),
            AggregateKind::Max => Acc::Max(f64::NEG_INFINITY),
            AggregateKind::Avg | AggregateKind::Plugin => Acc::Avg { sum: 0.0, count: 0 },
        })
    }

    fn prepare(&self, batch: &EventBatch, i: usize) -> Result<Option<f64>, String> {
        let Some(field) = &self.field else {
            return Ok(None);
        };
        eddy_plugin_sdk::json::field(batch.value(i), field)
            .and_then(|f| f.as_f64())
            .map(Some)
            .ok_or_else(|| {
                format!(
                    "no numeric field `{field}` for the window's {}",
                    self.kind.name()
                )
            })
    }

    fn fold(&mut self, accs: &mut Accs, slot: u32, _i: usize, value: Option<f64>) {
        let (s, v) = (slot as usize, value.unwrap_or(0.0));
        match accs {
            Accs::Count(c) => c[s] += 1,
            Accs::Sum(x) => x[s] += v,
            Accs::Min(x) => x[s] = x[s].min(v),
            Accs::Max(x) => x[s] = x[s].max(v),
            Accs::Avg(p) => {
                p[s].0 += v;
                p[s].1 += 1;
            }
            Accs::Mixed(all) => {
                let merged = self.merge(all[s].clone(), self.one(v));
                all[s] = merged.expect("a built-in folds into its own kind");
            }
            Accs::Empty | Accs::Bytes(_) => unreachable!("built-in aggregates never hold bytes"),
        }
    }

    fn flush(&mut self, _batch: &EventBatch, _accs: &mut Accs) -> Result<()> {
        Ok(())
    }

    fn merge(&mut self, a: Acc, b: Acc) -> Result<Acc> {
        Ok(match (a, b) {
            (Acc::Count(x), Acc::Count(y)) => Acc::Count(x + y),
            (Acc::Sum(x), Acc::Sum(y)) => Acc::Sum(x + y),
            (Acc::Min(x), Acc::Min(y)) => Acc::Min(x.min(y)),
            (Acc::Max(x), Acc::Max(y)) => Acc::Max(x.max(y)),
            (Acc::Avg { sum: s1, count: c1 }, Acc::Avg { sum: s2, count: c2 }) => Acc::Avg {
                sum: s1 + s2,
                count: c1 + c2,
            },
            (a, b) => anyhow::bail!("cannot merge accumulators {a:?} and {b:?}"),
        })
    }

    fn finish(&mut self, acc: &Acc, out: &mut Vec<u8>) -> Result<()> {
        match *acc {
            Acc::Count(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
            Acc::Sum(v) | Acc::Min(v) | Acc::Max(v) => write_number(out, v),
            Acc::Avg { sum, count } => write_number(out, sum / count.max(1) as f64),
            Acc::Bytes(_) => anyhow::bail!("built-in aggregates never hold bytes"),
        }
        Ok(())
    }
}

/// Writes a number as JSON: integral values without a fraction (`300`, not `300.0`).
pub fn write_number(out: &mut Vec<u8>, v: f64) {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        out.extend_from_slice(itoa::Buffer::new().format(v as i64).as_bytes());
    } else if v.is_finite() {
        serde_json::to_writer(out, &v).expect("writing a number to a Vec cannot fail");
    } else {
        out.extend_from_slice(b"null");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(agg: &mut Builtin, values: &[f64]) -> String {
        let mut accs = Accs::default();
        accs.push(agg.create().unwrap());
        for v in values {
            agg.fold(&mut accs, 0, 0, Some(*v));
        }
        let mut out = Vec::new();
        agg.finish(&accs.get(0), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn builtins_compute_their_results() {
        let field = Some("amount".to_string());
        let b = |k| Builtin::new(k, field.clone());
        assert_eq!(result(&mut b(AggregateKind::Count), &[1.0, 2.0]), "2");
        assert_eq!(result(&mut b(AggregateKind::Sum), &[1.5, 2.0]), "3.5");
        assert_eq!(result(&mut b(AggregateKind::Sum), &[100.0, 200.0]), "300");
        assert_eq!(
            result(&mut b(AggregateKind::Min), &[3.0, -2.5, 7.0]),
            "-2.5"
        );
        assert_eq!(result(&mut b(AggregateKind::Max), &[3.0, -2.5, 7.0]), "7");
        assert_eq!(result(&mut b(AggregateKind::Avg), &[1.0, 2.0]), "1.5");
    }

    #[test]
    fn merging_equals_folding_everything_into_one() {
        let mut agg = Builtin::new(AggregateKind::Avg, Some("x".into()));
        let mut accs = Accs::default();
        accs.push(agg.create().unwrap());
        accs.push(agg.create().unwrap());
        agg.fold(&mut accs, 0, 0, Some(1.0));
        agg.fold(&mut accs, 1, 0, Some(2.0));
        agg.fold(&mut accs, 1, 0, Some(6.0));
        let merged = agg.merge(accs.get(0), accs.get(1)).unwrap();
        assert_eq!(merged, Acc::Avg { sum: 9.0, count: 3 });
        // A column that holds another kind too still folds.
        accs.push(Acc::Bytes(Box::new([])));
        agg.fold(&mut accs, 0, 0, Some(5.0));
        assert_eq!(accs.get(0), Acc::Avg { sum: 6.0, count: 2 });
    }
}
