//! `eddy plugin …`: the plugin author's commands (test against fixtures, scaffold a
//! project, precompile), parsed here and run by the library's `authoring` module.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use eddy::authoring::harness::HarnessOptions;
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
    }
}
