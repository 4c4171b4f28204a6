//! `chaos`: a filter that misbehaves on purpose when it meets an event with
//! `"poison": true`, so tests can check that the host contains a bad plugin. Other events
//! are kept.
//!
//! Config `mode`: `trap` (panics), `trap-any` (panics on any batch: a version broken on
//! live data), `loop` (never returns), `oom` (allocates without end),
//! `bad-indices` (returns an index past the batch), `foreign-key` (writes keyed state for
//! a key not in the batch), `refuse` (fails `init`), `probe` (rejects the poisoned event with
//! what it could see of the outside: the `EDDY_PROBE` environment variable, the wall
//! clock, the file `/etc/hostname` — to test that WASI is deny-by-default). Every event it keeps also bumps a
//! per-key counter in keyed state (`seen`), so tests can check that a failed batch leaves
//! no state behind.
//!
//! Built with feature `aggregate`, it is a window aggregate instead (see `aggregate.rs`).

use eddy_plugin_sdk::{host, Batch, Config, Filter, Plugin, Selection};

/// How the plugin misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Trap,
    TrapAny,
    Loop,
    Oom,
    BadIndices,
    ForeignKey,
    Probe,
}

/// A filter that misbehaves on poisoned events.
#[derive(Debug)]
pub struct Chaos {
    mode: Mode,
}

impl Plugin for Chaos {
    fn init(config: &Config) -> Result<Self, String> {
        let mode = match config.require("mode")? {
            "trap" => Mode::Trap,
            "trap-any" => Mode::TrapAny,
            "loop" => Mode::Loop,
            "oom" => Mode::Oom,
            "bad-indices" => Mode::BadIndices,
            "foreign-key" => Mode::ForeignKey,
            "probe" => Mode::Probe,
            "refuse" => return Err("refusing to start, as configured".into()),
            other => return Err(format!("config key `mode` = {other:?} is not a mode")),
        };
        Ok(Self { mode })
    }
}

impl Filter for Chaos {
    fn select(&mut self, batch: &Batch<'_>, out: &mut Selection) {
        if self.mode == Mode::TrapAny && !batch.is_empty() {
            panic!("broken on live data, as configured");
        }
        for event in batch.iter() {
            let seen = host::state_get(event.key(), "seen").map_or(0, |b| b.len());
            host::state_set(event.key(), "seen", &vec![0; seen + 1]);
            if event.field("poison").and_then(|f| f.as_bool()) != Some(true) {
                out.keep(&event);
                continue;
            }
            match self.mode {
                Mode::Trap | Mode::TrapAny => panic!("poisoned event {}", event.index()),
                Mode::Loop => loop {
                    std::hint::black_box(&event);
                },
                Mode::Oom => {
                    let mut hoard: Vec<Vec<u8>> = Vec::new();
                    loop {
                        hoard.push(vec![1; 1 << 20]);
                        std::hint::black_box(&hoard);
                    }
                }
                Mode::BadIndices => {
                    out.keep(&event);
                    let last = batch.get(batch.len() - 1).expect("batch is not empty");
                    out.keep(&last);
                    out.keep(&last);
                }
                Mode::ForeignKey => host::state_set(b"no-such-key-in-this-batch", "seen", b"x"),
                Mode::Probe => out.reject(&event, probe()),
            }
        }
    }
}

/// What the plugin can see of the outside world.
fn probe() -> String {
    let env = std::env::var("EDDY_PROBE").unwrap_or_else(|_| "none".into());
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let file = match std::fs::read_to_string("/etc/hostname") {
        Ok(_) => "readable",
        Err(_) => "denied",
    };
    format!("env={env}; clock={clock}; file={file}")
}

#[cfg(not(feature = "aggregate"))]
eddy_plugin_sdk::export_filter!(Chaos);

#[cfg(feature = "aggregate")]
pub mod aggregate;
