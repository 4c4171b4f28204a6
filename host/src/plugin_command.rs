//! `eddy plugin …`: the plugin author's commands (test against fixtures, scaffold a
//! project, precompile), parsed here and run by the library's `authoring` module.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use eddy::authoring::harness::HarnessOptions;
use eddy::authoring::scaffold::{self, Lang, NewProject};
use eddy::authoring::test::{parse_table, run_scenario, run_test, TestRequest};
use eddy::config::{EventFields, SideInputConfig};
use eddy::plugin::{CompiledCache, PluginRuntime};

/// What `eddy plugin` does.
#[derive(Subcommand)]
pub enum PluginCommand {
    /// Runs a plugin over JSON lines through a mock host (the real runtime, in-memory
    /// keyed state and side inputs) and prints or checks what it emits.
    Test {
        /// The component (.wasm); not needed with --scenario.
        #[arg(required_unless_present = "scenario")]
        plugin: Option<PathBuf>,
        /// The input events, JSON lines.
        #[arg(long, required_unless_present = "scenario")]
        input: Option<PathBuf>,
        /// The expected output, JSON lines: a mismatch prints a diff and fails.
        #[arg(long)]
        expect: Option<PathBuf>,
        /// A config key for the plugin's `init` (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = crate::key_value)]
        config: Vec<(String, String)>,
        /// A side-input table for `lookup` (repeatable): a CSV or JSON-lines file.
        #[arg(long = "table", value_name = "NAME:KEY_FIELD=FILE", value_parser = table)]
        tables: Vec<SideInputConfig>,
        /// Keyed state to start from: {"<key>": {"<name>": "<value>"}}.
        #[arg(long)]
        state: Option<PathBuf>,
        /// Events per plugin call.
        #[arg(long, default_value_t = 1024)]
        batch: usize,
        /// The field holding each event's time (integer ms); default 0.
        #[arg(long)]
        time_field: Option<String>,
        /// The field holding each event's key (for keyed state).
        #[arg(long)]
        key_field: Option<String>,
        /// Run the steps of a scenario file instead (inputs, savepoint, swap).
        #[arg(long, conflicts_with_all = ["plugin", "input", "expect", "config", "tables", "state"])]
        scenario: Option<PathBuf>,
    },
    /// Writes a new plugin project that builds and passes `eddy plugin test` as it is.
    New {
        /// The plugin's name (lowercase letters, digits, `-`, `_`).
        name: String,
        /// Its language.
        #[arg(long, value_enum)]
        lang: Lang,
        /// Where to write it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Rust: build against this local `plugin-sdk` checkout instead of crates.io.
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Compiles components into the compiled-code cache ahead of their first run (a 15 MB
    /// Python or JavaScript component takes seconds to compile, then loads in
    /// milliseconds).
    Compile {
        /// The components.
        #[arg(required = true)]
        plugins: Vec<PathBuf>,
    },
}

fn table(arg: &str) -> Result<SideInputConfig, String> {
    parse_table(arg).map_err(|e| format!("{e:#}"))
}

/// Runs an `eddy plugin` command.
pub fn run(command: PluginCommand) -> Result<ExitCode> {
    match command {
        PluginCommand::Test {
            plugin,
            input,
            expect,
            config,
            tables,
            state,
            batch,
            time_field,
            key_field,
            scenario,
        } => {
            let runtime = PluginRuntime::new(CompiledCache::from_env())?;
            let passed = match (scenario, plugin, input) {
                (Some(scenario), _, _) => run_scenario(&runtime, &scenario)?,
                (None, Some(plugin), Some(input)) => {
                    let options = HarnessOptions {
                        plugin,
                        config,
                        tables,
                        fields: EventFields {
                            time_field,
                            key_field,
                            max_future_ms: None,
                        },
                        batch,
                    };
                    run_test(
                        &runtime,
                        TestRequest {
                            options,
                            input,
                            expect,
                            state,
                        },
                    )?
                }
                _ => unreachable!("clap requires PLUGIN and --input without --scenario"),
            };
            Ok(if passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        PluginCommand::New {
            name,
            lang,
            dir,
            sdk,
        } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            let next = scaffold::create(&NewProject {
                name,
                lang,
                dir,
                sdk,
            })?;
            println!("created; build and test it with:\n{next}");
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Compile { plugins } => {
            let runtime = PluginRuntime::new(CompiledCache::from_env())?;
            for plugin in plugins {
                compile(&runtime, &plugin)?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Compiles one component into the cache, saying how long it took.
fn compile(runtime: &PluginRuntime, path: &std::path::Path) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let hash = eddy::plugin::content_hash(&bytes);
    let entry = runtime.cache().entry(runtime.engine(), &hash);
    let cached = entry.as_ref().is_some_and(|e| e.exists());
    let started = std::time::Instant::now();
    runtime
        .cache()
        .load(runtime.engine(), &bytes, &hash)
        .with_context(|| format!("cannot compile {}", path.display()))?;
    let took = started.elapsed();
    let size = bytes.len() as f64 / (1024.0 * 1024.0);
    match (entry, cached) {
        (Some(_), true) => println!(
            "{}: {size:.1} MB, already compiled (loaded from the cache in {} ms)",
            path.display(),
            took.as_millis()
        ),
        (Some(entry), false) => println!(
            "{}: {size:.1} MB, compiled in {:.2} s into {}",
            path.display(),
            took.as_secs_f64(),
            entry.display()
        ),
        (None, _) => anyhow::bail!(
            "there is no compiled-code cache to keep {} in: set EDDY_CACHE_DIR or HOME",
            path.display()
        ),
    }
    Ok(())
}
