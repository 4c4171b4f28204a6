//! End-to-end tests: they run the `eddy` binary on pipeline files and check what it
//! writes, prints and exits with.

mod common;

use std::process::Output;

use common::*;
use eddy_example_artifacts::{
    CHAOS_COMPONENT, DISTINCT_COMPONENT, ENRICH_COMPONENT, FILTER_COMPONENT,
};
use serde_json::Value;

const GENERATOR: &str =
    "[source]\nkind = \"generator\"\ncount = 5000\nkeys = 50\npartitions = 3\nseed = 7\n";

#[test]
fn quickstart_shape_filters_and_enriches_generated_payments() {
    let s = Scratch::new();
    let users: String = (0..50)
        .map(|i| format!("{{\"user\":\"user-{i}\",\"tier\":\"t{}\"}}\n", i % 3))
        .collect();
    s.write("users.jsonl", &users);
    let all = format!("{GENERATOR}[sink]\nkind = \"file\"\npath = \"all.jsonl\"\n");
    assert_success(&s.eddy("run", &all));
    let pipeline = format!(
        r#"{GENERATOR}
[[side_input]]
name = "users"
path = "users.jsonl"
key_field = "user"

[[plugin]]
name = "big"
path = "{FILTER_COMPONENT}"
config = {{ field = "amount", op = ">=", value = "100" }}

[[plugin]]
name = "profile"
path = "{ENRICH_COMPONENT}"
config = {{ table = "users", field = "user" }}

[sink]
kind = "file"
path = "out.jsonl"
"#
    );
    let output = s.eddy("run", &pipeline);
    assert_success(&output);
    assert_stderr_contains(&output, "done: 5000 in");

    let all = s.lines("all.jsonl");
    assert_eq!(all.len(), 5000);
    let seqs: Vec<u64> = all.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (0..5000).collect::<Vec<_>>(),
        "every seq exactly once, in order"
    );

    let expected: Vec<&Value> = all
        .iter()
        .filter(|v| v["amount"].as_f64().unwrap() >= 100.0)
        .collect();
    let out = s.lines("out.jsonl");
    assert!(!expected.is_empty());
    assert_eq!(out.len(), expected.len());
    for (got, want) in out.iter().zip(expected) {
        assert_eq!(got["seq"], want["seq"]);
        let user = want["user"].as_str().unwrap();
        let n: u64 = user.trim_start_matches("user-").parse().unwrap();
        assert_eq!(got["tier"], format!("t{}", n % 3));
        assert_eq!(got["amount"], want["amount"]);
    }
}

#[test]
fn a_broken_line_is_dead_lettered_and_the_rest_goes_through() {
    let s = Scratch::new();
    s.write(
        "in.jsonl",
        "{\"user\":\"a\",\"ts\":1,\"amount\":5}\n{\"user\":\"b\",\"ts\":\n{\"user\":\"c\",\"ts\":3}\n\n{\"user\":\"d\"}\n{\"user\":\"e\",\"ts\":5}",
    );
    let pipeline = r#"
[source]
kind = "file"
path = "in.jsonl"
time_field = "ts"
key_field = "user"

[sink]
kind = "file"
path = "out/results.jsonl"

[dead_letter]
kind = "file"
path = "out/dead.jsonl"
"#;
    let output = s.eddy("run", pipeline);
    assert_success(&output);
    let users: Vec<Value> = s
        .lines("out/results.jsonl")
        .iter()
        .map(|v| v["user"].clone())
        .collect();
    assert_eq!(users, vec!["a", "c", "e"]);
    let dead = s.lines("out/dead.jsonl");
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0]["position"], 2);
    assert!(
        dead[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("malformed JSON"),
        "{}",
        dead[0]
    );
    assert_eq!(dead[0]["value"], "{\"user\":\"b\",\"ts\":");
    assert!(dead[0]["source"].as_str().unwrap().ends_with("in.jsonl"));
    assert_eq!(dead[1]["position"], 5);
    assert!(dead[1]["reason"]
        .as_str()
        .unwrap()
        .contains("no event-time field `ts`"));
    assert_stderr_contains(&output, "5 in, 3 out");
}

#[test]
fn stdin_to_stdout_through_a_filter() {
    let s = Scratch::new();
    let pipeline = format!(
        r#"
[source]
kind = "stdin"

[[plugin]]
name = "de-only"
path = "{FILTER_COMPONENT}"
config = {{ field = "country", op = "==", value = "DE" }}

[sink]
kind = "stdout"

[dead_letter]
kind = "file"
path = "dead.jsonl"

[batch]
max_records = 2
max_wait = "10ms"
"#
    );
    let file = s.write("pipeline.toml", &pipeline);
    let input = "{\"country\":\"DE\",\"n\":1}\n{\"country\":\"FR\",\"n\":2}\n{\"n\":3}\n{\"country\":\"DE\",\"n\":4}\n";
    let output = eddy(&["run", file.to_str().unwrap()], Some(input));
    assert_success(&output);
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        stdout,
        "{\"country\":\"DE\",\"n\":1}\n{\"country\":\"DE\",\"n\":4}\n"
    );
    let dead = s.lines("dead.jsonl");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["reason"], "no field `country`");
    assert_eq!(dead[0]["plugin"], "de-only");
    assert_eq!(dead[0]["position"], 3);
    assert_eq!(dead[0]["value"]["n"], 3);
}

fn plugin_pipeline(plugin_path: &str) -> String {
    format!(
        "{GENERATOR}[[plugin]]\nname = \"p\"\npath = \"{plugin_path}\"\n[sink]\nkind = \"file\"\npath = \"out.jsonl\"\n"
    )
}

#[test]
fn a_missing_plugin_stops_the_run_before_it_starts() {
    let s = Scratch::new();
    let output = s.eddy("run", &plugin_pipeline("nowhere/filter.wasm"));
    assert_failure_says(
        &output,
        &["plugin `p`", "nowhere/filter.wasm", "cannot read"],
    );
    assert!(
        !s.path("out.jsonl").exists(),
        "a run that cannot start must not touch the sink"
    );
}

#[test]
fn files_that_are_not_plugin_components_are_refused_with_what_they_are() {
    let s = Scratch::new();
    s.write("module.wasm", "\0asm\u{1}\0\0\0");
    let output = s.eddy("run", &plugin_pipeline("module.wasm"));
    assert_failure_says(
        &output,
        &[
            "module.wasm",
            "core WebAssembly module, not a component",
            "wasm32-wasip2",
        ],
    );

    s.write("text.wasm", "hello");
    let output = s.eddy("run", &plugin_pipeline("text.wasm"));
    assert_failure_says(&output, &["text.wasm", "is not a WebAssembly component"]);

    // The smallest valid component: a header and nothing else.
    s.write("empty.wasm", "\0asm\r\0\u{1}\0");
    let output = s.eddy("validate", &plugin_pipeline("empty.wasm"));
    assert_failure_says(
        &output,
        &[
            "empty.wasm",
            "exports no interface of eddy:plugin@",
            "`lifecycle` and one of `filter`",
            "it exports: nothing",
        ],
    );
    assert!(!s.path("out.jsonl").exists());
}

#[test]
fn unknown_keys_and_bad_values_are_named() {
    let s = Scratch::new();
    let output = s.eddy(
        "run",
        &format!(
            "{}[sink]\nkind = \"null\"\n",
            GENERATOR.replace("seed = 7", "sed = 7")
        ),
    );
    assert_failure_says(&output, &["unknown field `sed`", "pipeline.toml"]);
    let output = s.eddy(
        "run",
        &format!("{GENERATOR}[sink]\nkind = \"null\"\n[batch]\nmax_wait = \"3 weeks\"\n"),
    );
    assert_failure_says(&output, &["invalid duration", "line"]);
    let output = s.eddy(
        "run",
        &format!("{GENERATOR}[sink]\nkind = \"null\"\n[bach]\n"),
    );
    assert_failure_says(&output, &["unknown field `bach`"]);
    let output = s.eddy(
        "run",
        "[source]\nkind = \"file\"\npath = \"missing.jsonl\"\n[sink]\nkind = \"null\"\n",
    );
    assert_failure_says(&output, &["cannot open source file", "missing.jsonl"]);
}

#[test]
fn validate_loads_type_checks_and_inits_without_running() {
    let s = Scratch::new();
    s.write("users.csv", "user,name\nuser-1,Ada\n");
    let pipeline = format!(
        "{GENERATOR}[[side_input]]\nname = \"users\"\npath = \"users.csv\"\nkey_field = \"user\"\n\
         [[plugin]]\nname = \"big\"\npath = \"{FILTER_COMPONENT}\"\nconfig = {{ field = \"amount\", op = \">\", value = \"1\" }}\n\
         [[plugin]]\nname = \"profile\"\npath = \"{ENRICH_COMPONENT}\"\nconfig = {{ table = \"users\", field = \"user\" }}\n\
         [sink]\nkind = \"file\"\npath = \"out.jsonl\"\n"
    );
    let output = s.eddy("validate", &pipeline);
    assert_success(&output);
    // Each plugin's `init` runs: a config it refuses, or a table it does not find, fails.
    for (bad, said) in [
        ("op = \">\"", "config key `op` = \"~\""),
        ("table = \"users\"", "users2"),
    ] {
        let wrong = match said {
            "users2" => bad.replace("users", "users2"),
            _ => bad.replace('>', "~"),
        };
        let refused = s.eddy("validate", &pipeline.replace(bad, &wrong));
        assert!(!refused.status.success());
        assert!(stderr(&refused).contains(said), "{}", stderr(&refused));
    }
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("plugin `big`: filter world"), "{stdout}");
    assert!(
        stdout.contains("plugin `profile`: transform world"),
        "{stdout}"
    );
    assert!(
        !s.path("out.jsonl").exists(),
        "validate must not run the pipeline"
    );
}

/// Runs the chaos plugin in `mode` over six events, two per batch, the third poisoned.
fn chaos_run(mode: &str, extra: &str) -> (Scratch, Output) {
    let s = Scratch::new();
    let events: String = (1..=6)
        .map(|i| format!("{{\"n\":{i},\"k\":\"k{i}\",\"poison\":{}}}\n", i == 3))
        .collect();
    s.write("in.jsonl", &events);
    let pipeline = format!(
        r#"
[source]
kind = "file"
path = "in.jsonl"
key_field = "k"

[[plugin]]
name = "chaos"
path = "{CHAOS_COMPONENT}"
config = {{ mode = "{mode}" }}
{extra}

[sink]
kind = "file"
path = "out.jsonl"

[dead_letter]
kind = "file"
path = "dead.jsonl"

[batch]
max_records = 2
"#
    );
    let output = s.eddy("run", &pipeline);
    (s, output)
}

#[test]
fn a_misbehaving_plugin_fails_only_the_event_it_fails_on() {
    let cases = [
        ("trap", "", "unreachable"),
        (
            "loop",
            "timeout = \"200ms\"",
            "ran past its timeout of 200ms",
        ),
        (
            "oom",
            "max_memory_mb = 32",
            "exceeded its memory limit of 32 MiB",
        ),
        ("bad-indices", "", "kept indices that are not ascending"),
        (
            "foreign-key",
            "",
            "not the key of an event in the current batch",
        ),
    ];
    for (mode, extra, reason) in cases {
        let (s, output) = chaos_run(mode, extra);
        assert_success(&output);
        let kept: Vec<Value> = s
            .lines("out.jsonl")
            .iter()
            .map(|v| v["n"].clone())
            .collect();
        // Event 3 is poisoned; event 4, in its batch, is innocent and goes on.
        assert_eq!(kept, vec![1, 2, 4, 5, 6], "mode {mode}");
        let dead = s.lines("dead.jsonl");
        let dead_n: Vec<Value> = dead.iter().map(|v| v["value"]["n"].clone()).collect();
        assert_eq!(dead_n, vec![3], "mode {mode}");
        for d in &dead {
            let why = d["reason"].as_str().unwrap();
            assert!(
                why.contains("plugin `chaos` (version ")
                    && why.contains("failed on this event")
                    && why.contains(reason),
                "mode {mode}: {why}"
            );
            assert_eq!(d["plugin"], "chaos");
            assert_eq!(d["position"], 3);
        }
        assert!(
            stderr(&output).contains("1 failed in 1 failed batches"),
            "mode {mode}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn a_plugin_that_refuses_its_config_stops_the_run() {
    let (s, output) = chaos_run("refuse", "");
    assert_failure_says(
        &output,
        &[
            "plugin `chaos`",
            "refused its config: refusing to start, as configured",
        ],
    );
    assert!(!s.path("out.jsonl").exists());
}

#[test]
fn windows_with_late_events_write_results_and_the_late_sink_record_for_record() {
    let s = Scratch::new();
    let events = [
        ("a", 1000, 1),
        ("b", 3000, 2),
        ("a", 9999, 3),
        ("a", 10000, 4),
        ("a", 12500, 5),
        ("a", 8000, 6),
        ("b", 16000, 7),
        ("a", 9000, 8),
        ("c", 30000, 9),
    ];
    let input: String = events
        .iter()
        .map(|(user, ts, amount)| {
            format!("{{\"user\":\"{user}\",\"ts\":{ts},\"amount\":{amount}}}\n")
        })
        .collect();
    s.write("in.jsonl", &input);
    let pipeline = r#"
[source]
kind = "file"
path = "in.jsonl"
time_field = "ts"
key_field = "user"

[watermark]
max_delay = "2s"

[window]
kind = "tumbling"
size = "10s"
allowed_lateness = "3s"
aggregate = "sum"
field = "amount"

[sink]
kind = "file"
path = "windows.jsonl"

[late]
kind = "file"
path = "late.jsonl"

[dead_letter]
kind = "file"
path = "dead.jsonl"
"#;
    for batch in [1, 4, 1024] {
        let output = s.eddy(
            "run",
            &format!("{pipeline}[batch]\nmax_records = {batch}\n"),
        );
        assert_success(&output);
        let windows = std::fs::read_to_string(s.path("windows.jsonl")).unwrap();
        assert_eq!(
            windows,
            "{\"key\":\"a\",\"window_start\":0,\"window_end\":10000,\"sum\":4}\n\
             {\"key\":\"b\",\"window_start\":0,\"window_end\":10000,\"sum\":2}\n\
             {\"key\":\"a\",\"window_start\":0,\"window_end\":10000,\"sum\":10}\n\
             {\"key\":\"a\",\"window_start\":10000,\"window_end\":20000,\"sum\":9}\n\
             {\"key\":\"b\",\"window_start\":10000,\"window_end\":20000,\"sum\":7}\n\
             {\"key\":\"c\",\"window_start\":30000,\"window_end\":40000,\"sum\":9}\n",
            "batch size {batch}"
        );
        let late = s.lines("late.jsonl");
        assert_eq!(late.len(), 1);
        assert_eq!(late[0]["position"], 8);
        assert_eq!(
            (
                late[0]["window_start"].as_i64(),
                late[0]["window_end"].as_i64()
            ),
            (Some(0), Some(10000))
        );
        assert_eq!(late[0]["value"]["amount"], 8);
        assert!(late[0]["reason"].as_str().unwrap().starts_with("late"));
        assert_eq!(std::fs::read_to_string(s.path("dead.jsonl")).unwrap(), "");
        let err = stderr(&output);
        assert!(
            err.contains("6 window firings, 1 late accepted, 1 late rejected"),
            "{err}"
        );
    }
}

#[test]
fn a_wasm_aggregate_counts_distinct_cards_per_user_and_window() {
    let s = Scratch::new();
    let source = "[source]\nkind = \"generator\"\ncount = 3000\nkeys = 7\npartitions = 2\nmax_disorder = \"30ms\"\nseed = 3\n";
    assert_success(&s.eddy(
        "run",
        &format!("{source}[sink]\nkind = \"file\"\npath = \"all.jsonl\"\n"),
    ));
    let pipeline = format!(
        "{source}[watermark]\nmax_delay = \"30ms\"\n\
         [window]\nkind = \"tumbling\"\nsize = \"500ms\"\naggregate = \"plugin\"\n\
         plugin = {{ name = \"cards\", path = \"{DISTINCT_COMPONENT}\", config = {{ field = \"card\" }} }}\n\
         [sink]\nkind = \"file\"\npath = \"cards.jsonl\"\n[batch]\nmax_records = 100\n"
    );
    let output = s.eddy("run", &pipeline);
    assert_success(&output);
    let mut expected: std::collections::BTreeMap<
        (String, i64),
        std::collections::BTreeSet<String>,
    > = Default::default();
    for v in s.lines("all.jsonl") {
        let ts = v["ts"].as_i64().unwrap();
        let window = ts - ts.rem_euclid(500);
        expected
            .entry((v["user"].as_str().unwrap().to_owned(), window))
            .or_default()
            .insert(v["card"].as_str().unwrap().to_owned());
    }
    let got: std::collections::BTreeMap<(String, i64), u64> = s
        .lines("cards.jsonl")
        .iter()
        .map(|r| {
            assert_eq!(
                r["window_end"].as_i64().unwrap() - r["window_start"].as_i64().unwrap(),
                500
            );
            (
                (
                    r["key"].as_str().unwrap().to_owned(),
                    r["window_start"].as_i64().unwrap(),
                ),
                r["cards"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: std::collections::BTreeMap<(String, i64), u64> = expected
        .into_iter()
        .map(|(k, cards)| (k, cards.len() as u64))
        .collect();
    assert_eq!(got, expected);
    assert_stderr_contains(&output, "0 late rejected");
}

#[test]
fn a_wasm_aggregate_merges_sessions() {
    let s = Scratch::new();
    s.write(
        "in.jsonl",
        "{\"u\":\"a\",\"ts\":0,\"card\":\"c1\"}\n{\"u\":\"a\",\"ts\":20,\"card\":\"c2\"}\n{\"u\":\"b\",\"ts\":5,\"card\":\"c9\"}\n\
         {\"u\":\"a\",\"ts\":10,\"card\":\"c1\"}\n{\"u\":\"a\",\"ts\":100,\"card\":\"c3\"}\n",
    );
    let pipeline = format!(
        "[source]\nkind = \"file\"\npath = \"in.jsonl\"\ntime_field = \"ts\"\nkey_field = \"u\"\n\
         [watermark]\nmax_delay = \"50ms\"\n\
         [window]\nkind = \"session\"\ngap = \"10ms\"\naggregate = \"plugin\"\n\
         plugin = {{ name = \"cards\", path = \"{DISTINCT_COMPONENT}\", config = {{ output = \"values\" }} }}\n\
         [sink]\nkind = \"file\"\npath = \"sessions.jsonl\"\n"
    );
    assert_success(&s.eddy("run", &pipeline));
    let sessions = std::fs::read_to_string(s.path("sessions.jsonl")).unwrap();
    assert_eq!(
        sessions,
        "{\"key\":\"b\",\"window_start\":5,\"window_end\":15,\"cards\":[\"c9\"]}\n\
         {\"key\":\"a\",\"window_start\":0,\"window_end\":30,\"cards\":[\"c1\",\"c2\"]}\n\
         {\"key\":\"a\",\"window_start\":100,\"window_end\":110,\"cards\":[\"c3\"]}\n"
    );
}

#[test]
fn plugins_of_the_wrong_world_are_refused_where_they_are_named() {
    let s = Scratch::new();
    let output = s.eddy("run", &plugin_pipeline(DISTINCT_COMPONENT));
    assert_failure_says(
        &output,
        &["plugin `p`", "window aggregate", "[window] plugin"],
    );
    let pipeline = format!(
        "{GENERATOR}[window]\nkind = \"tumbling\"\nsize = \"1s\"\naggregate = \"plugin\"\n\
         plugin = {{ name = \"f\", path = \"{FILTER_COMPONENT}\" }}\n[sink]\nkind = \"null\"\n"
    );
    assert_failure_says(
        &s.eddy("run", &pipeline),
        &["plugin `f`", "is a filter, not a window aggregate"],
    );
}

#[test]
fn wasi_is_deny_by_default_and_grants_open_it() {
    let run = |grant: &str| {
        let s = Scratch::new();
        s.write("in.jsonl", "{\"n\":1,\"poison\":true}\n");
        let pipeline = format!(
            "[source]\nkind = \"file\"\npath = \"in.jsonl\"\n\
             [[plugin]]\nname = \"probe\"\npath = \"{CHAOS_COMPONENT}\"\nconfig = {{ mode = \"probe\" }}\n{grant}\n\
             [sink]\nkind = \"null\"\n[dead_letter]\nkind = \"file\"\npath = \"dead.jsonl\"\n"
        );
        let file = s.write("pipeline.toml", &pipeline);
        let output = eddy_command()
            .args(["run", file.to_str().unwrap()])
            .env("EDDY_PROBE", "secret")
            .output()
            .unwrap();
        assert_success(&output);
        s.lines("dead.jsonl")[0]["reason"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(run(""), "env=none; clock=0; file=denied");
    let granted =
        run("grant = { env = [\"EDDY_PROBE\"], wall_clock = true, read_dirs = [\"/etc\"] }");
    // The real wall clock, in seconds since the epoch: within a minute of the test's.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let clock: u64 = granted
        .split("clock=")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no clock in {granted}"));
    assert!(now.abs_diff(clock) < 60, "{granted} at {now}");
    assert!(granted.starts_with("env=secret; "), "{granted}");
    assert!(granted.ends_with("file=readable"), "{granted}");
}

#[test]
fn operator_commands_name_what_is_missing() {
    let s = Scratch::new();
    let unreachable = eddy(&["status", "--admin", "127.0.0.1:1"], None);
    assert_failure_says(
        &unreachable,
        &[
            "cannot reach a running job's admin endpoint at 127.0.0.1:1",
            "[admin] listen",
        ],
    );
    let missing = s.path("no-such-savepoint");
    let inspected = eddy(&["inspect", missing.to_str().unwrap()], None);
    assert_failure_says(&inspected, &["cannot read", "no-such-savepoint"]);
    let pipeline = s.write(
        "pipeline.toml",
        &format!("{GENERATOR}[sink]\nkind = \"null\"\n"),
    );
    let resumed = eddy(
        &[
            "run",
            pipeline.to_str().unwrap(),
            "--from-savepoint",
            missing.to_str().unwrap(),
        ],
        None,
    );
    assert_failure_says(&resumed, &["no-such-savepoint"]);
    s.write("garbage.eddy", "not a checkpoint");
    let garbage = eddy(&["inspect", s.path("garbage.eddy").to_str().unwrap()], None);
    assert_failure_says(
        &garbage,
        &["garbage.eddy is unusable", "not an Eddy checkpoint"],
    );
}

#[test]
fn a_busy_admin_port_refuses_the_run_before_any_sink_is_touched() {
    let s = Scratch::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    s.write("out.jsonl", "{\"earlier\":\"output\"}\n");
    let pipeline = format!(
        "{GENERATOR}[sink]\nkind = \"file\"\npath = \"out.jsonl\"\n[admin]\nlisten = \"{addr}\"\n"
    );
    let output = s.eddy("run", &pipeline);
    assert_failure_says(
        &output,
        &["cannot listen on [admin] listen", &addr.to_string()],
    );
    assert_eq!(
        std::fs::read_to_string(s.path("out.jsonl")).unwrap(),
        "{\"earlier\":\"output\"}\n",
        "the previous output is untouched"
    );
}

#[test]
fn paths_that_name_the_same_file_are_refused_before_anything_is_touched() {
    let s = Scratch::new();
    let input = "{\"user\":\"u1\",\"ts\":1}\n{\"user\":\"u2\",\"ts\":2}\n";
    s.write("in.jsonl", input);
    std::fs::create_dir(s.path("sub")).unwrap();
    let source = "[source]\nkind = \"file\"\npath = \"in.jsonl\"\n";
    for (sinks, says) in [
        // The sink is the source, by another name.
        (
            "[sink]\nkind = \"file\"\npath = \"sub/../in.jsonl\"\n",
            "[sink] path",
        ),
        // Dead letters and results in one file.
        (
            "[sink]\nkind = \"file\"\npath = \"out.jsonl\"\n[dead_letter]\nkind = \"file\"\npath = \"./out.jsonl\"\n",
            "[dead_letter] path",
        ),
        // The checkpoint directory is the source.
        (
            "[sink]\nkind = \"file\"\npath = \"out.jsonl\"\n[checkpoint]\ndir = \"in.jsonl\"\n",
            "[checkpoint] dir",
        ),
    ] {
        let pipeline = format!("{source}{sinks}");
        for command in ["run", "validate"] {
            let output = s.eddy(command, &pipeline);
            assert_failure_says(&output, &[says, "is the same file as", "change one of them"]);
        }
        assert_eq!(std::fs::read_to_string(s.path("in.jsonl")).unwrap(), input);
        assert!(!s.path("out.jsonl").exists());
    }
}

#[test]
fn a_sliding_window_of_too_many_windows_per_event_is_refused_at_validate() {
    let s = Scratch::new();
    let window =
        "[window]\nkind = \"sliding\"\nsize = \"1d\"\nslide = \"1ms\"\naggregate = \"count\"\n";
    let pipeline = format!("{GENERATOR}{window}[sink]\nkind = \"null\"\n");
    let output = s.eddy("validate", &pipeline);
    assert_failure_says(
        &output,
        &[
            "puts every event in 86400000 windows",
            "max_windows_per_event = 10000",
        ],
    );
    let raised = pipeline.replace("aggregate", "max_windows_per_event = 100000000\naggregate");
    assert_success(&s.eddy("validate", &raised));
}

#[test]
fn a_directory_as_the_source_is_refused_before_any_sink_is_touched() {
    let s = Scratch::new();
    std::fs::create_dir(s.path("in")).unwrap();
    s.write("out.jsonl", "{\"earlier\":\"output\"}\n");
    let pipeline =
        "[source]\nkind = \"file\"\npath = \"in\"\n[sink]\nkind = \"file\"\npath = \"out.jsonl\"\n";
    assert_failure_says(
        &s.eddy("run", pipeline),
        &["is a directory", "[source] path"],
    );
    assert_eq!(
        std::fs::read_to_string(s.path("out.jsonl")).unwrap(),
        "{\"earlier\":\"output\"}\n"
    );
}

#[test]
fn invalid_utf8_and_far_future_events_are_dead_letters_and_the_rest_goes_on() {
    let s = Scratch::new();
    let mut input = b"{\"user\":\"u1\",\"ts\":1000}\n{\"user\":\"u\xff\",\"ts\":1001}\n".to_vec();
    // The year 3000: past the default max_future of a day.
    input.extend_from_slice(
        b"{\"user\":\"u2\",\"ts\":32503680000000}\n{\"user\":\"u3\",\"ts\":1002}\n",
    );
    std::fs::write(s.path("in.jsonl"), &input).unwrap();
    let pipeline = "[source]\nkind = \"file\"\npath = \"in.jsonl\"\ntime_field = \"ts\"\n\
                    [sink]\nkind = \"file\"\npath = \"out.jsonl\"\n\
                    [dead_letter]\nkind = \"file\"\npath = \"dead.jsonl\"\n";
    assert_success(&s.eddy("run", pipeline));
    let users: Vec<Value> = s
        .lines("out.jsonl")
        .iter()
        .map(|v| v["user"].clone())
        .collect();
    assert_eq!(users, ["u1", "u3"]);
    let dead = s.lines("dead.jsonl");
    assert_eq!(dead.len(), 2);
    assert!(dead[0]["reason"]
        .as_str()
        .unwrap()
        .contains("not valid UTF-8 (at byte 10)"));
    assert_eq!(dead[0]["position"], 2);
    assert!(dead[1]["reason"].as_str().unwrap().contains("max_future"));
    assert_eq!(dead[1]["position"], 3);

    // `max_future = "0s"` turns the bound off.
    let unbounded = format!("{pipeline}[watermark]\nmax_future = \"0s\"\n");
    assert_success(&s.eddy("run", &unbounded));
    assert_eq!(s.lines("out.jsonl").len(), 3);
}

#[test]
fn failure_policies_fail_or_retry_stop_the_job_with_the_plugins_error() {
    let (s, output) = chaos_run("trap", "failure = \"fail\"");
    assert_failure_says(
        &output,
        &[
            "plugin `chaos` failed on a batch",
            "failure policy is \"fail\"",
            "unreachable",
        ],
    );
    let kept: Vec<Value> = s
        .lines("out.jsonl")
        .iter()
        .map(|v| v["n"].clone())
        .collect();
    assert_eq!(kept, vec![1, 2], "the batches before the failure went on");

    let (_, output) = chaos_run("trap", "failure = \"retry\"\nretries = 2");
    assert_failure_says(&output, &["failed on a batch 3 times", "retries = 2"]);
    assert_stderr_contains(&output, "retrying in 200ms");

    let (_, output) = chaos_run("trap", "failure = \"skip\"");
    assert_failure_says(&output, &["unknown variant `skip`", "dead-letter", "retry"]);
}

#[test]
fn a_plugin_naming_a_side_input_the_pipeline_lacks_stops_the_run_at_start() {
    let s = Scratch::new();
    s.write("out.jsonl", "{\"earlier\":\"output\"}\n");
    let pipeline = format!(
        "{GENERATOR}[[plugin]]\nname = \"with-profile\"\npath = \"{ENRICH_COMPONENT}\"\n\
         config = {{ table = \"profiles\", field = \"user\" }}\n\
         [sink]\nkind = \"file\"\npath = \"out.jsonl\"\n"
    );
    assert_failure_says(
        &s.eddy("run", &pipeline),
        &[
            "plugin `with-profile`",
            "failed in init",
            "side-input table `profiles`, which the pipeline does not declare",
        ],
    );
    assert_eq!(
        std::fs::read_to_string(s.path("out.jsonl")).unwrap(),
        "{\"earlier\":\"output\"}\n"
    );
}

#[test]
fn an_unwritable_sink_path_and_a_broken_side_input_are_named_at_start() {
    let s = Scratch::new();
    // /proc refuses new files even to root: a read-only place.
    let unwritable =
        format!("{GENERATOR}[sink]\nkind = \"file\"\npath = \"/proc/eddy-out.jsonl\"\n");
    assert_failure_says(
        &s.eddy("run", &unwritable),
        &["cannot open the [sink]", "/proc/eddy-out.jsonl"],
    );
    s.write("users.csv", "user,tier\nu1,\"gold\nu2,silver\n");
    let broken = format!(
        "{GENERATOR}[[side_input]]\nname = \"users\"\npath = \"users.csv\"\nkey_field = \"user\"\n\
         [sink]\nkind = \"null\"\n"
    );
    for command in ["run", "validate"] {
        assert_failure_says(
            &s.eddy(command, &broken),
            &["users.csv", "CSV record 1 (line 2)", "spans lines"],
        );
    }
}

#[test]
fn extreme_times_and_keys_with_too_many_windows_are_handled_end_to_end() {
    let s = Scratch::new();
    // Times at the ends of i64 (the future bound off), and a key that would open a third
    // window while two are held open by a long allowed lateness.
    let lines = [
        r#"{"k":"c","ts":1000}"#,
        r#"{"k":"c","ts":2000}"#,
        r#"{"k":"c","ts":3000}"#,
        r#"{"k":"a","ts":9223372036854775000}"#,
        r#"{"k":"b","ts":-9223372036854775000}"#,
    ];
    s.write("in.jsonl", &(lines.join("\n") + "\n"));
    let pipeline =
        "[source]\nkind = \"file\"\npath = \"in.jsonl\"\ntime_field = \"ts\"\nkey_field = \"k\"\n\
                    [watermark]\nmax_future = \"0s\"\n\
                    [window]\nkind = \"tumbling\"\nsize = \"1s\"\nallowed_lateness = \"1000d\"\n\
                    max_open_windows_per_key = 2\naggregate = \"count\"\n\
                    [sink]\nkind = \"file\"\npath = \"out.jsonl\"\n\
                    [dead_letter]\nkind = \"file\"\npath = \"dead.jsonl\"\n";
    assert_success(&s.eddy("run", pipeline));
    let dead = s.lines("dead.jsonl");
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(dead[0]["value"]["ts"], 3000);
    assert!(dead[0]["reason"]
        .as_str()
        .unwrap()
        .contains("max_open_windows_per_key = 2"));
    // The event at i64's low end is late (the watermark is near the high end); its
    // window is computed without overflow.
    assert!(dead[1]["reason"].as_str().unwrap().starts_with("late:"));
    assert_eq!(dead[1]["window_start"], -9223372036854775000i64);
    let out = s.lines("out.jsonl");
    let a = out.iter().find(|w| w["key"] == "a").unwrap();
    assert!(a["window_start"].as_i64().unwrap() <= 9223372036854775000);
    assert_eq!(
        a["window_end"].as_i64(),
        Some(i64::MAX),
        "clamped, not wrapped"
    );
    assert_eq!(out.iter().filter(|w| w["key"] == "c").count(), 2);
}

#[test]
fn an_admin_endpoint_others_could_reach_is_refused_without_a_token() {
    let s = Scratch::new();
    let pipeline =
        format!("{GENERATOR}[sink]\nkind = \"null\"\n[admin]\nlisten = \"0.0.0.0:9464\"\n");
    for command in ["validate", "run"] {
        assert_failure_says(
            &s.eddy(command, &pipeline),
            &["not a loopback address", "token_file"],
        );
    }
}

#[test]
fn parallel_workers_share_the_generator_and_stdout_without_losing_or_splitting_a_line() {
    let pipeline = |parallelism: u32| {
        format!(
            "parallelism = {parallelism}\n[source]\nkind = \"generator\"\ncount = 20000\npartitions = 4\nkeys = 50\n\
             [[plugin]]\nname = \"some\"\npath = \"{}\"\nconfig = {{ field = \"amount\", op = \">=\", value = \"20\" }}\n\
             [sink]\nkind = \"stdout\"\n",
            FILTER_COMPONENT
        )
    };
    let lines = |parallelism: u32| {
        let s = Scratch::new();
        let output = s.eddy("run", &pipeline(parallelism));
        assert_success(&output);
        let mut lines: Vec<String> = String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    };
    let one = lines(1);
    assert!(one.len() > 10_000, "{} events passed", one.len());
    assert_eq!(lines(2), one, "two workers write what one writes");
}
