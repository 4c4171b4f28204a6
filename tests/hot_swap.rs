//! Hot swap: `eddy reload` replaces a running plugin stage's version at a batch boundary
//! while the job runs, under load, with every event processed by exactly one version and
//! the plugin's state carried over; bad versions are refused and the running one goes on.

mod common;

use std::time::Duration;

use common::*;
use eddy_example_artifacts::{
    CHAOS_AGGREGATE_COMPONENT, CHAOS_COMPONENT, DISTINCT_COMPONENT, FILTER_COMPONENT,
    NUMBERING_COMPONENT,
};

/// A long, rate-limited generator through the `numbering` plugin (which writes a running
/// number, kept in its own state, into the field its config names) into a file.
fn pipeline(admin: &str) -> String {
    format!(
        r#"
[source]
kind = "generator"
count = 2000000
rate = 20000
seed = 5

[[plugin]]
name = "tag"
path = "{NUMBERING_COMPONENT}"
config = {{ field = "v0" }}

[sink]
kind = "file"
path = "out.jsonl"

[dead_letter]
kind = "file"
path = "dead.jsonl"

[checkpoint]
dir = "state"
interval = "100ms"

[batch]
max_records = 256
max_wait = "5ms"

[admin]
listen = "{admin}"
"#
    )
}

/// `eddy reload` with `args`; on success, the record the new version starts at.
fn reload(admin: &str, args: &[&str]) -> Result<u64, String> {
    let mut all = vec!["reload", "--admin", admin];
    all.extend_from_slice(args);
    let output = eddy(&all, None);
    if !output.status.success() {
        return Err(stderr(&output));
    }
    let said = String::from_utf8_lossy(&output.stdout).to_string();
    said.split("from record ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or(said)
}

#[test]
fn a_hundred_swaps_under_load_process_every_event_once_by_exactly_one_version() {
    let s = Scratch::new();
    let admin = free_admin_address();
    let (mut child, _) = start_job(&s, &pipeline(&admin), &admin);

    // 100 swaps, alternating the config between two tags (a new config is a new version).
    let mut swaps = Vec::new();
    for i in 1..=100 {
        let field = format!("field=v{}", i % 2 + 1);
        let from = reload(&admin, &["tag", "--config", &field]).expect("the swap is accepted");
        swaps.push((from, format!("v{}", i % 2 + 1)));
    }
    // A bad version is refused and the running one goes on.
    s.write("garbage.wasm", "not a component");
    let refused = reload(&admin, &["tag", s.path("garbage.wasm").to_str().unwrap()]).unwrap_err();
    assert!(
        refused.contains("refused, the running version goes on"),
        "{refused}"
    );
    let refused = reload(&admin, &["tag", FILTER_COMPONENT]).unwrap_err();
    assert!(refused.contains("refused its config"), "{refused}");
    let refused = reload(&admin, &["tag", DISTINCT_COMPONENT]).unwrap_err();
    assert!(refused.contains("is a window aggregate"), "{refused}");
    s.write("module.wasm", "\0asm\u{1}\0\0\0");
    let refused = reload(&admin, &["tag", s.path("module.wasm").to_str().unwrap()]).unwrap_err();
    assert!(refused.contains("core WebAssembly module"), "{refused}");
    let refused = reload(&admin, &["nope"]).unwrap_err();
    assert!(
        refused.contains("no plugin stage `nope`; its stages: tag"),
        "{refused}"
    );

    let status = job_status(&admin);
    let history = status["plugins"][0]["history"].as_array().unwrap();
    assert_eq!(history.len(), 101, "start and 100 reloads");
    assert!(history[1]["checkpoint"].is_u64() && history[1]["why"] == "reload");
    let mut pauses: Vec<u64> = history[1..]
        .iter()
        .map(|h| h["pause_us"].as_u64().unwrap())
        .collect();
    pauses.sort_unstable();
    eprintln!(
        "pause per swap: p50 {} µs, p99 {} µs, max {} µs",
        pauses[49], pauses[98], pauses[99]
    );

    assert_success(&eddy(&["stop", "--admin", &admin], None));
    child.wait().unwrap();

    // Every event once, in order; the running number never restarts (the plugin's own
    // state went from version to version); and each event carries the tag of the version
    // that was running when it was read.
    let events = s.lines("out.jsonl");
    assert!(events.len() > 1000, "{} events", events.len());
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event["seq"], i as u64, "every seq once, in order");
        let expected = swaps
            .iter()
            .rev()
            .find(|(from, _)| *from <= i as u64)
            .map_or("v0", |(_, tag)| tag.as_str());
        let tags: Vec<&str> = ["v0", "v1", "v2"]
            .into_iter()
            .filter(|t| event.get(t).is_some())
            .collect();
        assert_eq!(tags, [expected], "event {i}: {event}");
        assert_eq!(
            event[expected], i as u64,
            "the running number goes on across swaps"
        );
    }
}

#[test]
fn a_version_that_fails_in_its_probation_is_rolled_back_and_its_batch_re_run() {
    let s = Scratch::new();
    let admin = free_admin_address();
    let (mut child, _) = start_job(&s, &pipeline(&admin), &admin);
    std::thread::sleep(Duration::from_millis(200));

    // A version that starts fine and traps on every batch of live data.
    let broken = reload(
        &admin,
        &["tag", CHAOS_COMPONENT, "--config", "mode=trap-any"],
    );
    assert!(
        broken.is_ok(),
        "{broken:?}: init succeeds, so the swap happens"
    );
    let status = wait_for_history(&admin, "tag", "rollback: ");
    let history = status["plugins"][0]["history"].as_array().unwrap();
    let whys: Vec<&str> = history.iter().map(|h| h["why"].as_str().unwrap()).collect();
    assert_eq!(whys.len(), 3, "{whys:?}");
    assert!(
        whys[2].starts_with("rollback: ") && whys[2].contains("unreachable"),
        "{whys:?}"
    );
    assert_eq!(
        history[2]["version"], history[0]["version"],
        "the first version runs again"
    );

    // An operator's own rollback goes back to the version before.
    let v9_from = reload(&admin, &["tag", "--config", "field=v9"]).unwrap();
    status_when(&admin, "events processed by v9", |status| {
        status["metrics"]["records_in"]
            .as_u64()
            .is_some_and(|n| n > v9_from)
    });
    let back = reload(&admin, &["tag", "--rollback"]).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_success(&eddy(&["stop", "--admin", &admin], None));
    child.wait().unwrap();

    // Nothing went to dead letters because of the bad version, and the numbering never
    // skipped: the failed batch was processed by the first version again.
    assert_eq!(std::fs::read_to_string(s.path("dead.jsonl")).unwrap(), "");
    let events = s.lines("out.jsonl");
    let mut tags = Vec::new();
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event["seq"], i as u64);
        let tag = if event.get("v9").is_some() {
            "v9"
        } else {
            "v0"
        };
        assert_eq!(event[tag], i as u64, "event {i}: {event}");
        if tags.last() != Some(&tag) {
            tags.push(tag);
        }
        if i as u64 >= back {
            assert_eq!(tag, "v0", "event {i}: after the rollback");
        }
    }
    assert_eq!(tags, ["v0", "v9", "v0"]);
}

/// Writes `text` as the job's pipeline file, starts `eddy run` on it and waits until its
/// admin endpoint at `admin` answers `eddy status`; returns the process and the pipeline
/// file.
fn start_job(s: &Scratch, text: &str, admin: &str) -> (Job, std::path::PathBuf) {
    let file = s.write("pipeline.toml", text);
    let child = spawn(&["run", file.to_str().unwrap(), "--quiet"]);
    wait_for_admin(admin);
    // The endpoint answers once the pipeline is built and its plugin files are watched.
    status_when(admin, "the job to start", |_| true);
    (child, file)
}

/// `eddy status` of the job at `admin`, as JSON.
fn job_status(admin: &str) -> serde_json::Value {
    let output = eddy(&["status", "--admin", admin], None);
    assert_success(&output);
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Polls `eddy status` until `done` holds of it (for up to 20 s: a loaded machine may be
/// slow to get there, and a sleep of a fixed length would guess); returns that status.
fn status_when(
    admin: &str,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let output = eddy(&["status", "--admin", admin], None);
        if output.status.success() {
            let status = serde_json::from_slice(&output.stdout).unwrap();
            if done(&status) {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "waited 20 s for {what}: {status}"
            );
        } else {
            assert!(
                std::time::Instant::now() < deadline,
                "waited 20 s for {what}: {}",
                stderr(&output)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The entry of plugin `name` in `status` (none while the job is starting).
fn plugin_status<'a>(status: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    status["plugins"]
        .as_array()
        .and_then(|plugins| plugins.iter().find(|p| p["name"] == name))
}

/// The history of plugin `name` in `status` (empty while the job is starting).
fn history_of<'a>(status: &'a serde_json::Value, name: &str) -> &'a [serde_json::Value] {
    plugin_status(status, name)
        .and_then(|p| p["history"].as_array())
        .map_or(&[], Vec::as_slice)
}

/// Waits until a checkpoint completes after the last swap of plugin `name` (the one taken
/// at the swap is cut before it, so only a later one holds the new version).
fn wait_for_a_checkpoint_after_the_swap(admin: &str, name: &str) {
    status_when(admin, "a checkpoint after the swap", |status| {
        let swap = history_of(status, name)
            .last()
            .and_then(|h| h["checkpoint"].as_u64());
        let last = status["last_checkpoint"]["id"].as_u64();
        matches!((swap, last), (Some(swap), Some(last)) if last > swap)
    });
}

/// Waits until the last entry of plugin `name`'s history says `why` (or starts so).
fn wait_for_history(admin: &str, name: &str, why: &str) -> serde_json::Value {
    status_when(
        admin,
        &format!("`{name}` history to say {why:?}"),
        |status| {
            history_of(status, name)
                .last()
                .and_then(|h| h["why"].as_str())
                .is_some_and(|w| w.starts_with(why))
        },
    )
}

#[test]
fn a_watched_plugin_file_is_loaded_once_complete_and_a_half_written_one_never() {
    let s = Scratch::new();
    let admin = free_admin_address();
    let component = std::fs::read(NUMBERING_COMPONENT).unwrap();
    std::fs::write(s.path("tag.wasm"), &component).unwrap();
    let text = pipeline(&admin).replace(NUMBERING_COMPONENT, "tag.wasm");
    let (mut child, _) = start_job(&s, &text, &admin);
    std::thread::sleep(Duration::from_millis(300));

    // Half a file, written in place: refused; the running version goes on.
    std::fs::write(s.path("tag.wasm"), &component[..component.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        history_of(&job_status(&admin), "tag").len(),
        1,
        "a half-written file never replaces the running version"
    );
    // The completed file is loaded.
    std::fs::write(s.path("tag.wasm"), &component).unwrap();
    let status = status_when(&admin, "the completed file to be loaded", |status| {
        history_of(status, "tag").len() > 1
    });
    let versions = history_of(&status, "tag");
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert_eq!(versions[1]["why"], "file change");
    assert_success(&eddy(&["stop", "--admin", &admin], None));
    child.wait().unwrap();
    // The stream never stopped: every event once.
    for (i, event) in s.lines("out.jsonl").iter().enumerate() {
        assert_eq!(event["seq"], i as u64);
        assert_eq!(event["v0"], i as u64);
    }
}

#[test]
fn a_job_killed_after_a_swap_resumes_with_the_version_that_was_running() {
    let s = Scratch::new();
    let admin = free_admin_address();
    let component = std::fs::read(NUMBERING_COMPONENT).unwrap();
    std::fs::write(s.path("tag.wasm"), &component).unwrap();
    let text = pipeline(&admin).replace(NUMBERING_COMPONENT, "tag.wasm");
    let (mut child, file) = start_job(&s, &text, &admin);
    std::thread::sleep(Duration::from_millis(300));
    // A new build (the same code with a custom section: another version) and a new
    // config.
    let mut build = component.clone();
    build.extend_from_slice(&[0, 6, 5, b'e', b'd', b'd', b'y', b'7']);
    std::fs::write(s.path("tag-v7.wasm"), &build).unwrap();
    let from = reload(
        &admin,
        &[
            "tag",
            s.path("tag-v7.wasm").to_str().unwrap(),
            "--config",
            "field=v7",
        ],
    )
    .unwrap();
    wait_for_a_checkpoint_after_the_swap(&admin, "tag");
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_file(s.path("tag-v7.wasm")).unwrap(); // the operator cleaned up

    // The pipeline file still names `tag.wasm` with `field = "v0"`.
    let mut child = spawn(&["run", file.to_str().unwrap(), "--quiet"]);
    wait_for_admin(&admin);
    wait_for_history(&admin, "tag", "resumed from a checkpoint");
    std::thread::sleep(Duration::from_millis(300));
    assert_success(&eddy(&["stop", "--admin", &admin], None));
    child.wait().unwrap();

    let events = s.lines("out.jsonl");
    assert!(events.len() as u64 > from + 1000, "{} events", events.len());
    check_tags(&events, from);

    // A savepoint carries the swapped-in component: a job started from it on another
    // machine (no checkpoint directory) runs the same version.
    let mut child = spawn(&["run", file.to_str().unwrap(), "--quiet"]);
    wait_for_admin(&admin);
    let sp = s.path("sp");
    assert_success(&stop_with_savepoint(&admin, &sp));
    child.wait().unwrap();
    std::fs::remove_dir_all(s.path("state")).unwrap();
    let mut child = spawn(&[
        "run",
        file.to_str().unwrap(),
        "--quiet",
        "--from-savepoint",
        sp.to_str().unwrap(),
    ]);
    wait_for_admin(&admin);
    wait_for_history(&admin, "tag", "resumed from a checkpoint");
    assert_success(&eddy(&["stop", "--admin", &admin], None));
    child.wait().unwrap();
}

/// Checks every event once and its tag: `v0` before record `from`, `v7` after.
fn check_tags(events: &[serde_json::Value], from: u64) {
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event["seq"], i as u64, "every seq once, across the crash");
        let tag = if (i as u64) < from { "v0" } else { "v7" };
        assert_eq!(event[tag], i as u64, "event {i}: {event}");
    }
}

#[test]
fn keyed_state_carries_over_swaps_and_the_output_is_byte_identical() {
    // The `fraud` plugin keeps per-user spend in host-owned keyed state.
    let fraud = |admin: &str| {
        format!(
            "[source]\nkind = \"generator\"\ncount = 60000\nrate = 15000\nkeys = 100\nseed = 3\n\
             [[plugin]]\nname = \"fraud\"\npath = \"{}\"\nconfig = {{ threshold = \"2000\", horizon_ms = \"300\" }}\n\
             [sink]\nkind = \"file\"\npath = \"out.jsonl\"\n[checkpoint]\ndir = \"state\"\ninterval = \"100ms\"\n\
             [batch]\nmax_wait = \"5ms\"\nmax_records = 256\n[admin]\nlisten = \"{admin}\"\n",
            eddy_example_artifacts::FRAUD_COMPONENT
        )
    };
    let reference = Scratch::new();
    assert_success(&reference.eddy("run", &fraud(&free_admin_address())));
    let expected = std::fs::read(reference.path("out.jsonl")).unwrap();
    assert!(expected.len() > 1000);

    let s = Scratch::new();
    let admin = free_admin_address();
    let (mut child, _) = start_job(&s, &fraud(&admin), &admin);
    let mut swaps = 0;
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(150));
        // The component read again from its file: a swap to the same version.
        if reload(&admin, &["fraud"]).is_ok() {
            swaps += 1;
        }
    }
    assert!(child.wait().unwrap().success());
    assert!(swaps >= 3, "only {swaps} swaps happened while the job ran");
    assert!(
        std::fs::read(s.path("out.jsonl")).unwrap() == expected,
        "the output of a run with {swaps} swaps differs from a run without"
    );
}

#[test]
fn shadow_mode_reports_a_known_difference_and_promote_swaps_the_candidate_in() {
    let s = Scratch::new();
    let admin = free_admin_address();
    let (mut child, _) = start_job(&s, &pipeline(&admin), &admin);
    std::thread::sleep(Duration::from_millis(200));

    // A candidate that writes its number under another name: every event differs.
    let mut all = vec![
        "reload",
        "--admin",
        admin.as_str(),
        "tag",
        "--shadow",
        "--config",
        "field=v1",
    ];
    assert_success(&eddy(&all, None));
    std::thread::sleep(Duration::from_millis(400));
    let status = job_status(&admin);
    let shadow = &status["plugins"][0]["shadow"];
    let compared = shadow["compared"].as_u64().unwrap();
    assert!(compared > 100, "{shadow}");
    assert_eq!(
        shadow["differing"], compared,
        "every event differs: {shadow}"
    );
    let sample = &shadow["samples"][0];
    assert!(
        sample["live"][0].as_str().unwrap().contains("\"v0\":")
            && sample["candidate"][0].as_str().unwrap().contains("\"v1\":"),
        "{sample}"
    );
    assert_eq!(status["plugins"][0]["history"].as_array().unwrap().len(), 1);

    // Promote: the candidate takes over, numbering on from the live version's count.
    all.truncate(4);
    all.push("--promote");
    assert_success(&eddy(&all, None));
    std::thread::sleep(Duration::from_millis(200));
    let status = job_status(&admin);
    assert!(status["plugins"][0]["shadow"].is_null());
    assert_eq!(
        status["plugins"][0]["history"][1]["why"],
        "promoted from shadow"
    );
    // And a shadow can be dropped again.
    all.truncate(4);
    all.extend(["--shadow", "--config", "field=v2"]);
    assert_success(&eddy(&all, None));
    all.truncate(4);
    all.push("--unshadow");
    assert_success(&eddy(&all, None));
    assert_success(&eddy(&["stop", "--admin", &admin], None));
    child.wait().unwrap();

    // Nothing the shadows did reached the sink; the numbering never broke.
    let mut tags = Vec::new();
    for (i, event) in s.lines("out.jsonl").iter().enumerate() {
        assert_eq!(event["seq"], i as u64);
        let tag = ["v0", "v1", "v2"]
            .into_iter()
            .find(|t| event.get(t).is_some())
            .unwrap();
        assert_eq!(event[tag], i as u64, "event {i}: {event}");
        if tags.last() != Some(&tag) {
            tags.push(tag);
        }
    }
    assert_eq!(tags, ["v0", "v1"]);
}

#[test]
fn a_new_release_migrates_the_keyed_state_an_older_one_wrote() {
    let s = Scratch::new();
    let admin = free_admin_address();
    let text = format!(
        "[source]\nkind = \"generator\"\ncount = 2000000\nrate = 20000\nkeys = 20\nseed = 9\n\
         [[plugin]]\nname = \"visits\"\npath = \"{}\"\n\
         [sink]\nkind = \"file\"\npath = \"out.jsonl\"\n[checkpoint]\ndir = \"state\"\ninterval = \"100ms\"\n\
         [batch]\nmax_wait = \"5ms\"\nmax_records = 256\n[admin]\nlisten = \"{admin}\"\n",
        eddy_example_artifacts::VISITS_COMPONENT
    );
    let (mut child, _) = start_job(&s, &text, &admin);
    std::thread::sleep(Duration::from_millis(300));
    // Release 2 stores counts as bytes, release 1 as text: the swap migrates them.
    let from = reload(
        &admin,
        &["visits", eddy_example_artifacts::VISITS_V2_COMPONENT],
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_success(&eddy(&["stop", "--admin", &admin], None));
    child.wait().unwrap();

    // Every key's count goes 1, 2, 3, … across the swap.
    let mut counts = std::collections::HashMap::new();
    let events = s.lines("out.jsonl");
    assert!(events.len() as u64 > from + 500, "{} events", events.len());
    for (i, event) in events.iter().enumerate() {
        let count = counts
            .entry(event["key"].as_str().unwrap().to_owned())
            .or_insert(0);
        *count += 1;
        assert_eq!(event["visits"], *count, "event {i}: {event}");
    }
}

/// A rate-limited generator of `count` events into 10 ms tumbling windows (so each batch
/// opens new ones) counting each user's distinct cards with the `distinct` aggregate
/// plugin (stage `cards`).
fn window_pipeline(admin: &str, count: u64) -> String {
    format!(
        "[source]\nkind = \"generator\"\ncount = {count}\nrate = 20000\nkeys = 20\nseed = 9\n\
         [window]\nkind = \"tumbling\"\nsize = \"10ms\"\naggregate = \"plugin\"\n\
         plugin = {{ name = \"cards\", path = \"cards.wasm\", config = {{ field = \"card\" }} }}\n\
         [sink]\nkind = \"file\"\npath = \"out.jsonl\"\n[dead_letter]\nkind = \"file\"\npath = \"dead.jsonl\"\n\
         [checkpoint]\ndir = \"state\"\ninterval = \"100ms\"\n\
         [batch]\nmax_wait = \"5ms\"\nmax_records = 256\n[admin]\nlisten = \"{admin}\"\n"
    )
}

/// The `cards` entry of `eddy status`.
fn cards_status(admin: &str) -> serde_json::Value {
    plugin_status(&job_status(admin), "cards")
        .expect("the aggregate in status")
        .clone()
}

#[test]
fn a_window_aggregate_plugin_swaps_only_to_another_aggregate_and_resumes_with_it_after_a_crash() {
    let s = Scratch::new();
    let admin = free_admin_address();
    std::fs::copy(DISTINCT_COMPONENT, s.path("cards.wasm")).unwrap();
    let (mut child, file) = start_job(&s, &window_pipeline(&admin, 2_000_000), &admin);
    std::thread::sleep(Duration::from_millis(300));
    let refused = reload(&admin, &["cards", NUMBERING_COMPONENT]).unwrap_err();
    assert!(
        refused.contains("is a transform, and `cards` is a window aggregate"),
        "{refused}"
    );
    let refused = reload(&admin, &["cards", DISTINCT_COMPONENT, "--shadow"]).unwrap_err();
    assert!(
        refused.contains("`cards` is the window aggregate; shadow mode"),
        "{refused}"
    );
    reload(&admin, &["cards", "--config", "field=country"]).expect("an aggregate to an aggregate");
    wait_for_a_checkpoint_after_the_swap(&admin, "cards");
    assert_eq!(cards_status(&admin)["history"].as_array().unwrap().len(), 2);
    child.kill().unwrap();
    child.wait().unwrap();

    // The pipeline file still says `field = "card"`: the job resumes counting countries.
    let before_crash = s.lines("out.jsonl").len();
    let mut child = spawn(&["run", file.to_str().unwrap(), "--quiet"]);
    wait_for_admin(&admin);
    wait_for_history(&admin, "cards", "resumed from a checkpoint");
    std::thread::sleep(Duration::from_millis(600));
    assert_success(&eddy(&["stop", "--admin", &admin], None));
    child.wait().unwrap();
    // Windows before the swap count distinct cards (up to 3 per user), after it distinct
    // countries (up to 8), also after the crash; every result is whole JSON.
    let results = s.lines("out.jsonl");
    assert!(
        results.len() > before_crash + 20,
        "{} results",
        results.len()
    );
    let counts: Vec<u64> = results
        .iter()
        .map(|r| r["cards"].as_u64().unwrap())
        .collect();
    assert!(counts[0] <= 3, "cards first: {counts:?}");
    assert!(
        counts[before_crash..].iter().any(|&c| c > 3),
        "countries after the crash: {counts:?}"
    );
}

#[test]
fn a_window_aggregate_that_fails_in_its_probation_is_rolled_back_and_the_results_are_unchanged() {
    let reference = Scratch::new();
    std::fs::copy(DISTINCT_COMPONENT, reference.path("cards.wasm")).unwrap();
    assert_success(&reference.eddy("run", &window_pipeline(&free_admin_address(), 80_000)));
    let mut expected = reference.lines("out.jsonl");
    assert!(expected.len() > 100, "{} results", expected.len());

    let s = Scratch::new();
    let admin = free_admin_address();
    std::fs::copy(DISTINCT_COMPONENT, s.path("cards.wasm")).unwrap();
    let (mut child, _) = start_job(&s, &window_pipeline(&admin, 80_000), &admin);
    std::thread::sleep(Duration::from_millis(300));
    // A new version that starts and creates accumulators, then fails every fold (it
    // cannot read the accumulators the running version wrote, nor fold into its own).
    reload(
        &admin,
        &[
            "cards",
            CHAOS_AGGREGATE_COMPONENT,
            "--config",
            "mode=trap-any",
        ],
    )
    .expect("init and create succeed, so the swap happens");
    wait_for_history(&admin, "cards", "rollback: ");
    let cards = cards_status(&admin);
    let whys: Vec<&str> = cards["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["why"].as_str().unwrap())
        .collect();
    assert_eq!(whys.len(), 3, "{whys:?}");
    assert!(
        whys[2].starts_with("rollback: ") && whys[2].contains("failed in `fold`"),
        "{whys:?}"
    );
    let metrics = http_get(&admin, "/metrics");
    assert!(
        metrics.contains("eddy_stage_rollbacks_total{stage=\"cards\"} 1"),
        "{metrics}"
    );
    assert!(child.wait().unwrap().success());

    // Every window's result is what the first version computes: the failed fold was made
    // again by it, and the windows the failed version created hold its empty accumulator.
    let mut results = s.lines("out.jsonl");
    let order = |r: &serde_json::Value| r.to_string();
    expected.sort_by_key(order);
    results.sort_by_key(order);
    assert_eq!(results, expected);
    assert_eq!(std::fs::read_to_string(s.path("dead.jsonl")).unwrap(), "");
}
