//! `eddy plugin test`: runs a plugin over fixture files through the mock host
//! ([`Harness`]) and checks what it emits against an expected file, or runs a scenario of
//! steps (inputs, a simulated savepoint and restore, a swap to another build).
//!
//! Output: the emitted values on stdout (one per line) when there is nothing to compare
//! them with; dead letters, the plugin's logs, a diff and the keyed state on stderr. A run
//! passes when every comparison matches and the plugin failed on no event.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;

use super::diff::line_diff;
use super::harness::{Harness, HarnessOptions, StepOutput};
use crate::config::{EventFields, SideInputConfig};
use crate::plugin::PluginRuntime;

/// One `eddy plugin test` run over one input file.
#[derive(Debug, Clone)]
pub struct TestRequest {
    /// How the plugin is fed.
    pub options: HarnessOptions,
    /// The input, JSON lines.
    pub input: PathBuf,
    /// The expected output, JSON lines.
    pub expect: Option<PathBuf>,
    /// Keyed state to start from (JSON).
    pub state: Option<PathBuf>,
}

/// Runs `request`; `Ok(false)` when the output differs from the expected or the plugin
/// failed on an event.
pub fn run_test(runtime: &PluginRuntime, request: TestRequest) -> Result<bool> {
    let mut harness = Harness::start(runtime, request.options)?;
    if let Some(state) = &request.state {
        harness.seed_state(&read_json(state)?)?;
    }
    let input = read(&request.input)?;
    let output = harness.run(&input)?;
    let label = request.input.display().to_string();
    let passed = report(&label, &output, request.expect.as_deref())?;
    let state = harness.state();
    if request.state.is_some() || state.as_object().is_some_and(|s| !s.is_empty()) {
        eprintln!(
            "keyed state after the run:\n{}",
            serde_json::to_string_pretty(&state)?
        );
    }
    Ok(passed)
}

/// Prints what a run gave and compares it with `expect`; whether it passed.
fn report(label: &str, output: &StepOutput, expect: Option<&Path>) -> Result<bool> {
    for dead in &output.dead {
        eprintln!(
            "dead letter (line {}): {}: {}",
            dead.line, dead.reason, dead.value
        );
    }
    let emitted: Vec<&str> = output
        .emitted
        .iter()
        .map(|v| std::str::from_utf8(v).unwrap_or("<not UTF-8>"))
        .collect();
    let mut passed = output.failed == 0;
    if !passed {
        eprintln!(
            "{label}: the plugin failed on {} event(s) (see the dead letters above)",
            output.failed
        );
    }
    let Some(expect) = expect else {
        for line in &emitted {
            println!("{line}");
        }
        eprintln!(
            "{label}: {} emitted, {} dead letters",
            emitted.len(),
            output.dead.len()
        );
        return Ok(passed);
    };
    let expected_text = String::from_utf8(read(expect)?)
        .with_context(|| format!("{} is not UTF-8 text", expect.display()))?;
    let expected: Vec<&str> = expected_text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    match line_diff(&expected, &emitted) {
        None => eprintln!(
            "{label}: ok, {} emitted as expected, {} dead letters",
            emitted.len(),
            output.dead.len()
        ),
        Some(diff) => {
            passed = false;
            eprintln!(
                "{label}: the output differs from {} (- expected, + emitted, by line):\n{diff}",
                expect.display()
            );
        }
    }
    Ok(passed)
}

/// A scenario file: a plugin, how it is fed, and steps.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    /// The component, relative to the scenario file.
    plugin: PathBuf,
    #[serde(default)]
    config: BTreeMap<String, String>,
    #[serde(default)]
    time_field: Option<String>,
    #[serde(default)]
    key_field: Option<String>,
    #[serde(default = "default_batch")]
    batch: usize,
    #[serde(default, rename = "table")]
    tables: Vec<SideInputConfig>,
    /// Keyed state to start from.
    #[serde(default)]
    state: Option<PathBuf>,
    #[serde(rename = "step")]
    steps: Vec<Step>,
}

/// One step of a scenario: exactly one of `input`, `savepoint` or `swap`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    /// Run these JSON lines through the plugin.
    input: Option<PathBuf>,
    /// ... and compare what it emits with these.
    expect: Option<PathBuf>,
    /// ... and its keyed state after the step with this JSON.
    expect_state: Option<PathBuf>,
    /// Take a savepoint and restore it into a new instance.
    #[serde(default)]
    savepoint: bool,
    /// Hot-swap to this component (with `config` on top of the running config).
    swap: Option<PathBuf>,
    #[serde(default)]
    config: BTreeMap<String, String>,
}

fn default_batch() -> usize {
    1024
}

/// Runs the scenario in `path`; `Ok(false)` when a step's check failed.
pub fn run_scenario(runtime: &PluginRuntime, path: &Path) -> Result<bool> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read scenario {}", path.display()))?;
    let scenario: Scenario = toml::from_str(&text)
        .with_context(|| format!("scenario {} is not valid", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tables = scenario
        .tables
        .into_iter()
        .map(|t| SideInputConfig {
            path: dir.join(&t.path),
            ..t
        })
        .collect();
    let options = HarnessOptions {
        plugin: dir.join(&scenario.plugin),
        config: scenario.config.into_iter().collect(),
        tables,
        fields: EventFields {
            time_field: scenario.time_field,
            key_field: scenario.key_field,
            max_future_ms: None,
        },
        batch: scenario.batch,
    };
    let mut harness = Harness::start(runtime, options)?;
    if let Some(state) = &scenario.state {
        harness.seed_state(&read_json(&dir.join(state))?)?;
    }
    let mut passed = true;
    for (i, step) in scenario.steps.iter().enumerate() {
        let label = format!("step {}", i + 1);
        match (&step.input, step.savepoint, &step.swap) {
            (Some(input), false, None) => {
                let output = harness.run(&read(&dir.join(input))?)?;
                let label = format!("{label} ({})", input.display());
                let expect = step.expect.as_ref().map(|e| dir.join(e));
                passed &= report(&label, &output, expect.as_deref())?;
            }
            (None, true, None) => {
                harness.savepoint_and_restore()?;
                eprintln!("{label}: savepoint taken and restored into a new instance");
            }
            (None, false, Some(swap)) => {
                let config: Vec<_> = step.config.clone().into_iter().collect();
                harness.swap(&dir.join(swap), &config)?;
                eprintln!(
                    "{label}: swapped to {} (version {})",
                    swap.display(),
                    &harness.version()[..12]
                );
            }
            _ => bail!(
                "scenario {}: {label} must have exactly one of `input`, `savepoint = true` or `swap`",
                path.display()
            ),
        }
        if let Some(expected) = &step.expect_state {
            let want = read_json(&dir.join(expected))?;
            let have = harness.state();
            if want != have {
                passed = false;
                eprintln!(
                    "{label}: the keyed state differs from {}:\nexpected {}\nactual   {}",
                    expected.display(),
                    want,
                    have
                );
            }
        }
    }
    Ok(passed)
}

/// Reads `--table NAME:KEY_FIELD=FILE`.
pub fn parse_table(arg: &str) -> Result<SideInputConfig> {
    let (table, path) = arg
        .split_once('=')
        .with_context(|| format!("--table {arg}: expected NAME:KEY_FIELD=FILE"))?;
    let (name, key_field) = table.split_once(':').with_context(|| {
        format!(
            "--table {arg}: name the table's key field, as in `--table {table}:KEY_FIELD={path}`"
        )
    })?;
    Ok(SideInputConfig {
        name: name.to_owned(),
        path: path.into(),
        key_field: key_field.to_owned(),
    })
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn read_json(path: &Path) -> Result<Value> {
    serde_json::from_slice(&read(path)?)
        .with_context(|| format!("{} is not valid JSON", path.display()))
}
