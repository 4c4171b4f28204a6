//! The plugin author's tools, end to end through the `eddy` binary: `eddy plugin test`
//! (fixtures, expectations with a readable diff, side inputs, keyed state, scenarios with
//! a savepoint and a swap), and a plugin's own output reaching the log.

mod common;

use common::*;
use eddy_example_artifacts::{
    CHAOS_COMPONENT, ENRICH_COMPONENT, FILTER_COMPONENT, FRAUD_COMPONENT, NUMBERING_COMPONENT,
};

const PAYMENTS: &str = "{\"user\": \"u1\", \"amount\": 150}\n\
                        {\"user\": \"u2\", \"amount\": 50}\n\
                        {\"user\": \"u3\"}\n\
                        not json\n\
                        {\"user\": \"u1\", \"amount\": 1000.5}\n";

/// `eddy plugin test` of the `filter` example keeping amounts of 100 or more, two events
/// per call.
fn filter_args(input: &str) -> Vec<String> {
    [
        "plugin",
        "test",
        FILTER_COMPONENT,
        "--input",
        input,
        "--config",
        "field=amount",
        "--config",
        "op=>=",
        "--config",
        "value=100",
        "--batch=2",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect()
}

fn run(args: &[String]) -> std::process::Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    eddy(&args, None)
}

#[test]
fn plugin_test_prints_what_a_plugin_emits_and_rejects() {
    let s = Scratch::new();
    let input = s.write("in.jsonl", PAYMENTS);
    let output = run(&filter_args(input.to_str().unwrap()));
    assert_success(&output);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "{\"user\": \"u1\", \"amount\": 150}\n{\"user\": \"u1\", \"amount\": 1000.5}\n"
    );
    let said = stderr(&output);
    assert!(
        said.contains("dead letter (line 3): no field `amount`"),
        "{said}"
    );
    assert!(
        said.contains("dead letter (line 4): malformed JSON"),
        "{said}"
    );
}

#[test]
fn plugin_test_passes_a_right_expectation_and_fails_a_wrong_one_with_a_diff() {
    let s = Scratch::new();
    let input = s.write("in.jsonl", PAYMENTS);
    let right = s.write(
        "right.jsonl",
        "{\"user\": \"u1\", \"amount\": 150}\n{\"user\": \"u1\", \"amount\": 1000.5}\n",
    );
    let mut args = filter_args(input.to_str().unwrap());
    args.extend(["--expect".into(), right.to_str().unwrap().into()]);
    let output = run(&args);
    assert_success(&output);
    assert!(stderr(&output).contains("ok, 2 emitted as expected"));

    let wrong = s.write(
        "wrong.jsonl",
        "{\"user\": \"u1\", \"amount\": 150}\n{\"user\": \"u2\", \"amount\": 50}\n",
    );
    let mut args = filter_args(input.to_str().unwrap());
    args.extend(["--expect".into(), wrong.to_str().unwrap().into()]);
    let output = run(&args);
    assert_eq!(output.status.code(), Some(1), "a mismatch fails");
    let said = stderr(&output);
    assert!(said.contains("the output differs from"), "{said}");
    assert!(
        said.contains("-     2 | {\"user\": \"u2\", \"amount\": 50}"),
        "{said}"
    );
    assert!(
        said.contains("+     2 | {\"user\": \"u1\", \"amount\": 1000.5}"),
        "{said}"
    );
}

#[test]
fn plugin_test_gives_side_inputs_and_keyed_state() {
    let s = Scratch::new();
    let users = s.write("users.csv", "user,name\nu1,Ada\n");
    let input = s.write("in.jsonl", "{\"user\": \"u1\"}\n{\"user\": \"u9\"}\n");
    let output = eddy(
        &[
            "plugin",
            "test",
            ENRICH_COMPONENT,
            "--input",
            input.to_str().unwrap(),
            "--config",
            "table=users",
            "--config",
            "field=user",
            "--table",
            &format!("users:user={}", users.display()),
        ],
        None,
    );
    assert_success(&output);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "{\"user\": \"u1\",\"name\":\"Ada\"}\n{\"user\": \"u9\"}\n"
    );
    let refused = eddy(
        &[
            "plugin",
            "test",
            ENRICH_COMPONENT,
            "--input",
            input.to_str().unwrap(),
            "--table",
            "users=users.csv",
        ],
        None,
    );
    assert!(stderr(&refused).contains("name the table's key field"));

    // The fraud plugin sums each user's spend in keyed state: seeded, then printed.
    let state = s.write("state.json", "{\"u1\": {\"spend\": \"1900\"}}");
    let input = s.write(
        "pay.jsonl",
        "{\"user\": \"u1\", \"amount\": 150, \"ts\": 1000}\n",
    );
    let output = eddy(
        &[
            "plugin",
            "test",
            FRAUD_COMPONENT,
            "--input",
            input.to_str().unwrap(),
            "--key-field",
            "user",
            "--time-field",
            "ts",
            "--state",
            state.to_str().unwrap(),
            "--config",
            "threshold=2000",
        ],
        None,
    );
    assert_success(&output);
    let said = stderr(&output);
    assert!(said.contains("keyed state after the run:"), "{said}");
    assert!(said.contains("\"u1\""), "{said}");
}

#[test]
fn plugin_test_fails_on_a_trapping_plugin_and_says_what_it_printed() {
    let s = Scratch::new();
    let input = s.write("in.jsonl", "{\"a\": 1}\n{\"poison\": true}\n{\"b\": 2}\n");
    let output = eddy(
        &[
            "plugin",
            "test",
            CHAOS_COMPONENT,
            "--input",
            input.to_str().unwrap(),
            "--config",
            "mode=trap",
        ],
        None,
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "{\"a\": 1}\n{\"b\": 2}\n",
        "the other events still pass"
    );
    let said = stderr(&output);
    // The panic message reaches the log, tagged with the stage, and the dead letter.
    assert!(said.contains("stderr: poisoned event 0"), "{said}");
    assert!(
        said.contains("dead letter (line 2): plugin `eddy_example_chaos`")
            && said.contains("the plugin said: thread")
            && said.contains("poisoned event 0"),
        "{said}"
    );
}

#[test]
fn a_scenario_carries_state_over_a_savepoint_and_a_swap() {
    let s = Scratch::new();
    s.write("a.jsonl", "{\"x\": 1}\n{\"x\": 2}\n");
    s.write(
        "a.expected.jsonl",
        "{\"x\": 1,\"n\":0}\n{\"x\": 2,\"n\":1}\n",
    );
    s.write("b.jsonl", "{\"x\": 3}\n");
    s.write("b.expected.jsonl", "{\"x\": 3,\"n\":2}\n");
    s.write("c.expected.jsonl", "{\"x\": 3,\"m\":3}\n");
    let scenario = |last: &str| {
        format!(
            "plugin = \"{NUMBERING_COMPONENT}\"\n\
             [[step]]\ninput = \"a.jsonl\"\nexpect = \"a.expected.jsonl\"\n\
             [[step]]\nsavepoint = true\n\
             [[step]]\ninput = \"b.jsonl\"\nexpect = \"b.expected.jsonl\"\n\
             [[step]]\nswap = \"{NUMBERING_COMPONENT}\"\nconfig = {{ field = \"m\" }}\n\
             [[step]]\ninput = \"b.jsonl\"\nexpect = \"{last}\"\n"
        )
    };
    let file = s.write("scenario.toml", &scenario("c.expected.jsonl"));
    let output = eddy(
        &["plugin", "test", "--scenario", file.to_str().unwrap()],
        None,
    );
    assert_success(&output);
    let said = stderr(&output);
    assert!(
        said.contains("step 2: savepoint taken and restored"),
        "{said}"
    );
    assert!(said.contains("step 4: swapped to"), "{said}");

    // Without the state carried over, the numbering would restart: the check fails.
    let file = s.write("scenario.toml", &scenario("a.expected.jsonl"));
    let output = eddy(
        &["plugin", "test", "--scenario", file.to_str().unwrap()],
        None,
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
}

/// Runs `program args` in `dir`, failing the test with its output when it fails.
fn run_in(dir: &std::path::Path, program: &str, args: &[&str], env: &[(&str, &std::path::Path)]) {
    let mut command = std::process::Command::new(program);
    command.current_dir(dir).args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} in {} failed:\n{}\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn plugin_new_rust_builds_against_the_packaged_sdk_and_passes_its_own_test() {
    let s = Scratch::new();
    // The SDK as it would be published: `cargo package` builds and verifies the crate,
    // and the project depends on the unpacked package (a `[patch.crates-io]` override).
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("scaffold-target");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run_in(
        &repo,
        &cargo,
        &[
            "package",
            "-p",
            "eddy-plugin-sdk",
            "--allow-dirty",
            "--quiet",
        ],
        &[("CARGO_TARGET_DIR", &target)],
    );
    let version = env!("CARGO_PKG_VERSION");
    let packaged = target.join(format!("package/eddy-plugin-sdk-{version}"));
    assert!(
        packaged.join("wit/eddy.wit").exists(),
        "the contract travels with the crate"
    );

    let project = s.path("big-spenders");
    let created = eddy(
        &[
            "plugin",
            "new",
            "big-spenders",
            "--lang",
            "rust",
            "--dir",
            project.to_str().unwrap(),
            "--sdk",
            packaged.to_str().unwrap(),
        ],
        None,
    );
    assert_success(&created);
    let build_target = target.join("project");
    let env = [("CARGO_TARGET_DIR", build_target.as_path())];
    run_in(&project, &cargo, &["test", "--quiet"], &env);
    run_in(
        &project,
        &cargo,
        &["build", "--release", "--quiet", "--target", "wasm32-wasip2"],
        &env,
    );
    let wasm = build_target.join("wasm32-wasip2/release/big_spenders.wasm");
    test_scaffolded(&project, &wasm);

    // A second project in the same place is refused, and the first is left alone.
    let again = eddy(
        &[
            "plugin",
            "new",
            "big-spenders",
            "--lang",
            "rust",
            "--dir",
            project.to_str().unwrap(),
        ],
        None,
    );
    assert!(stderr(&again).contains("already exists and is not empty"));
}

/// `eddy plugin new NAME --lang LANG` into a scratch directory; the project's directory.
fn scaffold(s: &Scratch, name: &str, lang: &str) -> std::path::PathBuf {
    let project = s.path(name);
    let created = eddy(
        &[
            "plugin",
            "new",
            name,
            "--lang",
            lang,
            "--dir",
            project.to_str().unwrap(),
        ],
        None,
    );
    assert_success(&created);
    project
}

/// `eddy plugin test` of a scaffolded project's component against its fixture.
fn test_scaffolded(project: &std::path::Path, wasm: &std::path::Path) {
    let tested = eddy(
        &[
            "plugin",
            "test",
            wasm.to_str().unwrap(),
            "--input",
            project.join("fixtures/input.jsonl").to_str().unwrap(),
            "--expect",
            project.join("fixtures/expected.jsonl").to_str().unwrap(),
        ],
        None,
    );
    assert_success(&tested);
}

#[test]
fn plugin_new_js_builds_and_passes_its_own_test() {
    let s = Scratch::new();
    let project = scaffold(&s, "big-spenders", "js");
    run_in(&project, "bash", &["test.sh"], &[]);
    run_in(&project, "bash", &["build.sh"], &[]);
    test_scaffolded(&project, &project.join("plugin.wasm"));
}

#[test]
fn plugin_new_python_builds_and_passes_its_own_test() {
    let s = Scratch::new();
    let project = scaffold(&s, "big-spenders", "python");
    run_in(&project, "bash", &["test.sh"], &[]);
    run_in(&project, "bash", &["build.sh"], &[]);
    test_scaffolded(&project, &project.join("plugin.wasm"));
}
