//! The same plugins in Rust, Python and JavaScript give byte-identical results: the
//! `filter` and `enrich` examples of each language run through the same pipelines and
//! `eddy plugin test` over the shared fixtures (`example-plugins/fixtures/`, whose expected
//! files the Rust plugins wrote), and over a generated stream; and each language's own
//! unit tests pass against its mock host.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use eddy_example_artifacts::{
    ENRICH_COMPONENT, FILTER_COMPONENT, JS_ENRICH_COMPONENT, JS_FILTER_COMPONENT,
    PYTHON_ENRICH_COMPONENT, PYTHON_FILTER_COMPONENT,
};

/// (language, filter component, enrich component).
const LANGUAGES: &[(&str, &str, &str)] = &[
    ("rust", FILTER_COMPONENT, ENRICH_COMPONENT),
    ("python", PYTHON_FILTER_COMPONENT, PYTHON_ENRICH_COMPONENT),
    ("js", JS_FILTER_COMPONENT, JS_ENRICH_COMPONENT),
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A file of fixture set `set` (`example-plugins/fixtures/<set>/`).
fn fixture(set: &str, file: &str) -> PathBuf {
    repo().join("example-plugins/fixtures").join(set).join(file)
}

/// The fixture sets: (set, the example it is for).
const FIXTURE_SETS: &[(&str, &str)] = &[
    ("filter", "filter"),
    ("filter-edge", "filter"),
    ("enrich", "enrich"),
    ("enrich-edge", "enrich"),
];

/// The stage config of a fixture set (`config.toml`) as an inline TOML table.
fn fixture_config(set: &str) -> String {
    let text = std::fs::read_to_string(fixture(set, "config.toml")).unwrap();
    let table: toml::Table = toml::from_str(&text).unwrap();
    let pairs: Vec<String> = table.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    format!("{{ {} }}", pairs.join(", "))
}

/// A pipeline running `component` as stage `example` with the config and side input of
/// fixture set `set`, from `source` into `out.jsonl`, dead letters into `dead.jsonl`.
fn pipeline(set: &str, example: &str, component: &str, source: &str) -> String {
    let side_input = if example == "enrich" {
        format!(
            "[[side_input]]\nname = \"users\"\npath = \"{}\"\nkey_field = \"user\"\n",
            fixture(set, "users.jsonl").display()
        )
    } else {
        String::new()
    };
    format!(
        "{source}\n{side_input}\
         [[plugin]]\nname = \"{example}\"\npath = \"{component}\"\nconfig = {}\ntimeout = \"10s\"\n\
         [sink]\nkind = \"file\"\npath = \"out.jsonl\"\n\
         [dead_letter]\nkind = \"file\"\npath = \"dead.jsonl\"\n\
         [batch]\nmax_records = 7\n",
        fixture_config(set)
    )
}

#[test]
fn every_language_gives_the_fixtures_expected_output_in_a_pipeline_and_in_plugin_test() {
    for &(set, example) in FIXTURE_SETS {
        let expected = std::fs::read(fixture(set, "expected.jsonl")).unwrap();
        let expected_dead = std::fs::read(fixture(set, "expected-dead.jsonl")).unwrap();
        for &(language, filter, enrich) in LANGUAGES {
            let component = if example == "filter" { filter } else { enrich };
            let s = Scratch::new();
            std::fs::copy(fixture(set, "input.jsonl"), s.path("input.jsonl")).unwrap();
            let source = "[source]\nkind = \"file\"\npath = \"input.jsonl\"";
            assert_success(&s.eddy("run", &pipeline(set, example, component, source)));
            let what = format!("{language} {example} on fixtures {set}");
            let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
            assert_eq!(
                text(&std::fs::read(s.path("out.jsonl")).unwrap()),
                text(&expected),
                "{what}: the output differs from the fixture"
            );
            // The fixture's dead letters name the input as `file:input.jsonl`.
            let input = format!("file:{}", s.path("input.jsonl").display());
            assert_eq!(
                text(&std::fs::read(s.path("dead.jsonl")).unwrap())
                    .replace(&input, "file:input.jsonl"),
                text(&expected_dead),
                "{what}: the dead letters differ from the fixture"
            );

            // The same through the mock host on the command line.
            let mut args = vec![
                "plugin".to_owned(),
                "test".into(),
                component.into(),
                "--input".into(),
                s.path("input.jsonl").display().to_string(),
                "--expect".into(),
                fixture(set, "expected.jsonl").display().to_string(),
            ];
            let config: toml::Table =
                toml::from_str(&std::fs::read_to_string(fixture(set, "config.toml")).unwrap())
                    .unwrap();
            for (key, value) in config {
                args.push("--config".into());
                args.push(format!("{key}={}", value.as_str().unwrap()));
            }
            if example == "enrich" {
                args.push("--table".into());
                args.push(format!(
                    "users:user={}",
                    fixture(set, "users.jsonl").display()
                ));
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let tested = eddy(&args, None);
            assert!(tested.status.success(), "{what}: {}", stderr(&tested));
        }
    }
}

#[test]
fn every_language_gives_the_same_output_on_a_generated_stream() {
    let source = "[source]\nkind = \"generator\"\ncount = 20000\nkeys = 300\nseed = 11";
    for example in ["filter", "enrich"] {
        let mut reference: Option<(Vec<u8>, Vec<u8>)> = None;
        for &(language, filter, enrich) in LANGUAGES {
            let component = if example == "filter" { filter } else { enrich };
            let s = Scratch::new();
            // The generator's users are `user-N`; the fixture's table knows none, so
            // enrich passes or rejects by its config: the same in every language.
            assert_success(&s.eddy("run", &pipeline(example, example, component, source)));
            let got = (
                std::fs::read(s.path("out.jsonl")).unwrap(),
                std::fs::read(s.path("dead.jsonl")).unwrap(),
            );
            assert!(!got.0.is_empty() || !got.1.is_empty());
            match &reference {
                None => reference = Some(got),
                Some(want) => assert!(
                    *want == got,
                    "{language} {example}: the output differs from the Rust plugin's"
                ),
            }
        }
    }
}

/// Runs a language's unit-test script on `dir`, failing with its output.
fn unit_tests(script: &str, dir: &str) {
    let output = std::process::Command::new("bash")
        .arg(repo().join(script))
        .arg(repo().join(dir))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{script} {dir}:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_python_library_and_examples_pass_their_unit_tests() {
    for dir in [
        "plugin-sdk/python",
        "example-plugins/python/filter",
        "example-plugins/python/enrich",
    ] {
        unit_tests("plugin-sdk/python/test.sh", dir);
    }
}

#[test]
fn the_javascript_library_and_examples_pass_their_unit_tests() {
    for dir in [
        "plugin-sdk/js",
        "example-plugins/js/filter",
        "example-plugins/js/enrich",
    ] {
        unit_tests("plugin-sdk/js/test.sh", dir);
    }
}
