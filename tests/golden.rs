//! Golden savepoints: a savepoint written by an earlier Eddy restores on this one.
//!
//! `tests/golden/` holds the pipeline that wrote them, one savepoint per checkpoint
//! format (`v1`: one positional struct; `v2`: named, versioned sections), and the output
//! of an uninterrupted run. Each savepoint was taken through the admin endpoint in the
//! middle of the run, with keyed plugin state (the `fraud` plugin) and open windows. A
//! run resumed from it must end with exactly the uninterrupted run's output: a lost
//! position replays events (duplicates), lost keyed or window state changes alerts and
//! sums. When a change breaks this test, the change needs a migration (see
//! `host/src/checkpoint/legacy.rs` for the first one), never a new golden file.

mod common;

use std::path::Path;

use common::*;
use eddy_example_artifacts::FRAUD_COMPONENT;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/golden");

/// Resumes the golden pipeline from the savepoint of checkpoint format `format`, in a
/// job directory laid out as it was (paths relative to the pipeline file, the sink file
/// as the job left it), and returns the sink file at the end.
fn resume_from(format: &str) -> String {
    let golden = Path::new(GOLDEN);
    let s = Scratch::new();
    let pipeline = std::fs::read_to_string(golden.join("pipeline.toml"))
        .unwrap()
        .replace("FRAUD_PLUGIN", FRAUD_COMPONENT)
        .replace("127.0.0.1:19464", &free_admin_address());
    s.write("pipeline.toml", &pipeline);
    std::fs::copy(golden.join("expected.jsonl"), s.path("out.jsonl")).unwrap();
    let savepoint = golden.join(format).join("savepoint.eddy");
    let output = eddy_command()
        .current_dir(s.path(""))
        .args(["run", "pipeline.toml", "--quiet", "--from-savepoint"])
        .arg(&savepoint)
        .output()
        .unwrap();
    assert_success(&output);
    std::fs::read_to_string(s.path("out.jsonl")).unwrap()
}

#[test]
fn a_format_1_savepoint_restores_into_the_uninterrupted_output() {
    let expected = std::fs::read_to_string(Path::new(GOLDEN).join("expected.jsonl")).unwrap();
    assert!(expected.lines().count() > 100);
    assert_eq!(resume_from("v1"), expected);
}

#[test]
fn a_format_2_savepoint_restores_into_the_uninterrupted_output() {
    let expected = std::fs::read_to_string(Path::new(GOLDEN).join("expected.jsonl")).unwrap();
    assert_eq!(resume_from("v2"), expected);
}

#[test]
fn inspect_lists_the_sections_of_either_format() {
    for format in ["v1", "v2"] {
        let path = Path::new(GOLDEN).join(format).join("savepoint.eddy");
        let output = eddy(&["inspect", path.to_str().unwrap()], None);
        assert_success(&output);
        let inspected: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(inspected["kind"], "savepoint");
        let sections: Vec<(String, u64)> = inspected["sections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap().to_owned(),
                    s["entries"].as_u64().unwrap(),
                )
            })
            .collect();
        let names: Vec<&str> = sections.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "source",
                "watermarks",
                "plugin/fraud",
                "window",
                "sink/sink",
                "metrics"
            ],
            "{format}"
        );
        assert_eq!(sections[2].1, 50, "keyed state of 50 users ({format})");
        assert!(sections[3].1 > 0, "open windows ({format})");
    }
}
