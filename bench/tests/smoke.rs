//! The benchmark's smoke run: tiny sizes, every stage for real, so that the
//! benchmark cannot rot. A user's story: build, run `tandem-bench --out DIR`,
//! read the report.

use std::path::PathBuf;
use std::process::Command;

/// The debug `tandem-agent` next to the bench binary; built when missing
/// (`cargo test -p tandem-bench` alone does not build other packages).
fn agent_binary() -> PathBuf {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_tandem-bench"));
    let agent = bench.with_file_name("tandem-agent");
    if !agent.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "tandem-agent", "--bin", "tandem-agent"])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build -p tandem-agent failed");
    }
    assert!(agent.exists(), "no tandem-agent at {}", agent.display());
    agent
}

/// The PocketBase `tests/run.sh` installs (or `TANDEM_TEST_POCKETBASE`).
fn pocketbase() -> PathBuf {
    let path = std::env::var_os("TANDEM_TEST_POCKETBASE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/pocketbase/.venv/bin/pocketbase")
        });
    assert!(
        path.exists(),
        "PocketBase is not installed at {} (tests/run.sh installs it)",
        path.display()
    );
    path
}

#[test]
fn a_tiny_run_writes_every_section_with_a_verdict() {
    let out = std::env::temp_dir().join(format!("tandem-bench-smoke-{}", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_tandem-bench"))
        .args(["--rows", "200", "--rates", "50", "--latency-secs", "1"])
        .args([
            "--capture-secs",
            "1",
            "--capture-rounds",
            "1",
            "--scale",
            "1",
            "--clients",
            "2",
        ])
        .args(["--poll-ms", "50", "--link-rows", "1000"])
        .args(["--api-records", "20", "--api-budget", "100", "--pocketbase"])
        .arg(pocketbase())
        .arg("--out")
        .arg(&out)
        .arg("--agent")
        .arg(agent_binary())
        .status()
        .expect("run tandem-bench");
    assert!(status.success(), "tandem-bench failed: {status}");

    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("bench.json")).expect("bench.json written"),
    )
    .expect("bench.json is JSON");
    let markdown = std::fs::read_to_string(out.join("bench.md")).expect("bench.md written");
    for (key, heading, lines) in [
        ("first_sync", "## First sync throughput", 2),
        ("incremental", "## Sustained incremental throughput", 2),
        ("latency", "## Commit-to-visible latency", 6),
        ("capture_cost", "## Write cost of capture", 2),
        ("memory", "## Peak resident memory of the agent", 4),
        ("composite_keys", "## Records found by a composite key", 4),
        ("api_writes", "## Writes to a cloud API", 2),
    ] {
        let section = json[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} missing"));
        assert_eq!(section.len(), lines, "{key}: {section:?}");
        for line in section {
            let value = line["value"].as_f64().expect("a figure");
            assert!(value.is_finite() && value > 0.0, "{key}: {line}");
        }
        assert!(
            markdown.contains(heading),
            "{heading} missing from bench.md"
        );
    }
    // Every throughput figure stands next to its limit from the same run.
    for key in [
        "first_sync",
        "incremental",
        "capture_cost",
        "composite_keys",
        "api_writes",
    ] {
        for line in json[key].as_array().expect("section") {
            assert!(
                line["limit"]["value"].as_f64().is_some_and(|v| v > 0.0),
                "{key}: {line}"
            );
            assert!(line["target"]["pass"].is_boolean(), "{key}: {line}");
        }
    }
    // All 200 rows went each way, and every latency probe arrived.
    for flow in json["raw"]["flows"].as_array().expect("flows") {
        assert_eq!(flow["rows"], 200);
        for l in flow["latency"].as_array().expect("latency") {
            assert_eq!(l["seen"], l["written"], "{l}");
        }
    }
    std::fs::remove_dir_all(&out).expect("clean up");
}
