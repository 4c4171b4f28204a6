//! Project tasks, run as `cargo xtask <task>`:
//!
//! - `plugins`: builds the example plugins and copies them to `target/plugins/`.
//! - `quickstart`: `plugins`, then runs `examples/quickstart.toml` with a release `eddy`.
//! - `broker [--partitions N] [--topic NAME[:N]]...`: a Kafka-protocol broker for
//!   development (librdkafka's mock cluster, `tools/broker`) on loopback; prints its
//!   bootstrap address first and runs until stopped.
//! - `peers [ARGS]`: `plugins` and a release `eddy`, then `tools/peers/run.py` (Eddy, Apache
//!   Flink and Bytewax on the same files; outside CI: it installs ~900 MB of peers into
//!   `~/.cache/eddy/peers` and runs for tens of minutes). `ARGS` go to the script.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    match task.as_str() {
        "plugins" => plugins().map(|_| ()),
        "quickstart" => quickstart(),
        "broker" => broker(std::env::args().skip(2).collect()),
        "peers" => peers(std::env::args().skip(2).collect()),
        _ => bail!("usage: cargo xtask <plugins|quickstart|broker [ARGS]|peers [ARGS]>"),
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `target/` of the repository, which `examples/quickstart.toml` names for the plugins and
/// its output: there even when `CARGO_TARGET_DIR` puts the build elsewhere.
fn examples_dir() -> PathBuf {
    workspace().join("target")
}

/// Copies the example plugins (built by `eddy-example-artifacts`) to `target/plugins/`.
fn plugins() -> Result<PathBuf> {
    let dir = examples_dir().join("plugins");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, path) in eddy_example_artifacts::ALL {
        let to = dir.join(format!("{name}.wasm"));
        std::fs::copy(path, &to)
            .with_context(|| format!("cannot copy {path} to {}", to.display()))?;
        println!("plugin {name}: {}", to.display());
    }
    Ok(dir)
}

fn quickstart() -> Result<()> {
    plugins()?;
    cargo(&[
        "run",
        "--release",
        "-p",
        "eddy",
        "--",
        "run",
        "examples/quickstart.toml",
    ])
    .context("the quickstart pipeline failed")?;
    let out = examples_dir().join("quickstart");
    println!("\nresults: {}", out.join("payments.jsonl").display());
    println!("dead letters: {}", out.join("dead-letters.jsonl").display());
    Ok(())
}

/// Runs `cargo` with `args` in the workspace.
fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace())
        .args(args)
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    Ok(())
}

/// Runs the development broker in the foreground; `args` go to it.
fn broker(args: Vec<String>) -> Result<()> {
    let mut run = vec!["run", "--quiet", "-p", "eddy-dev-broker", "--"];
    run.extend(args.iter().map(String::as_str));
    cargo(&run)
}

fn peers(args: Vec<String>) -> Result<()> {
    let plugins = plugins()?;
    cargo(&["build", "--release", "-p", "eddy"])?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    let status = Command::new("python3")
        .current_dir(workspace())
        .arg("tools/peers/run.py")
        .arg("--eddy")
        .arg(target.join("release").join("eddy"))
        .arg("--filter-wasm")
        .arg(plugins.join("filter.wasm"))
        .args(args)
        .status()
        .context("cannot run python3 (the peers script needs Python 3.9 or later)")?;
    if !status.success() {
        bail!("the peers comparison failed; its logs are in ~/.cache/eddy/peers/work");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CI sets `CARGO_TARGET_DIR`; the quickstart must still find its plugins.
    #[test]
    fn the_quickstart_finds_the_plugins_where_they_are_copied() {
        plugins().unwrap();
        let examples = workspace().join("examples");
        let pipeline = std::fs::read_to_string(examples.join("quickstart.toml")).unwrap();
        let wasm_paths: Vec<&str> = pipeline
            .lines()
            .filter_map(|line| line.strip_prefix("path = \""))
            .filter_map(|rest| rest.strip_suffix(".wasm\""))
            .collect();
        assert_eq!(wasm_paths.len(), 2, "the quickstart has two plugins");
        for path in wasm_paths {
            let wasm = examples.join(format!("{path}.wasm"));
            assert!(wasm.exists(), "{} was not written", wasm.display());
        }
    }
}
