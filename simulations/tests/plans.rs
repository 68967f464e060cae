//! The shipped scenarios parse, and their schedules depend only on the seed.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use meshchat_sim::{plan, report::to_json, Scenario};

fn shipped() -> Vec<Scenario> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut found: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    found.sort();
    found.iter().map(|p| Scenario::load(p).unwrap()).collect()
}

#[test]
fn every_shipped_scenario_parses() {
    let names: Vec<String> = shipped().into_iter().map(|s| s.name).collect();
    for wanted in [
        "smoke",
        "churn",
        "partition-heal",
        "large",
        "big-group",
        "fanout-gossip",
        "fanout-pairwise",
    ] {
        assert!(
            names.iter().any(|n| n == wanted),
            "missing {wanted}: {names:?}"
        );
    }
}

#[test]
fn the_same_seed_gives_the_same_schedule_and_another_seed_does_not() {
    for scenario in shipped() {
        let a = to_json(&plan(&scenario, 11));
        let b = to_json(&plan(&scenario, 11));
        assert_eq!(a, b, "{}", scenario.name);
        let c = to_json(&plan(&scenario, 12));
        assert_ne!(a, c, "{}", scenario.name);
    }
}

#[test]
fn a_malformed_scenario_is_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "name = \"x\"\nduration = \"5s\"\nnetwork = { peers = \"ten\" }\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meshchat-sim"))
        .arg("run")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml"), "{stderr}");
    assert!(stderr.contains("peers"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
