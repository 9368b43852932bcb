//! The disk under the state directory fills up while the agent syncs: the
//! agent says so and retries, the change rows it could not log stay in the
//! change table, and once space returns everything arrives, once.
//!
//! The full disk is real: a small tmpfs mounted over the state directory
//! (needs root; the test says SKIPPED otherwise).

mod harness;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::{eventually, Agent, Db, Engine};
use tokio::io::{AsyncBufReadExt, BufReader};

const TIMEOUT: Duration = Duration::from_secs(60);

/// A tmpfs mounted for the test, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> Result<SmallDisk, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(SmallDisk(at.to_owned()))
    }

    /// Fills the disk with one file; returns it.
    fn fill(&self) -> PathBuf {
        let path = self.0.join("filler");
        let mut file = std::fs::File::create(&path).expect("create filler");
        let chunk = vec![0u8; 64 * 1024];
        loop {
            if file.write_all(&chunk).is_err() {
                break;
            }
        }
        // Whatever fits in the last partial chunk.
        while file.write_all(&[0u8; 512]).is_ok() {}
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_under_the_state_loses_nothing() {
    let source = Db::create(Engine::Postgres).await;
    let target = Db::create(Engine::Mysql).await;
    for db in [&source, &target] {
        db.exec(&format!(
            "CREATE TABLE items (id {}, label {}, body {})",
            db.id(),
            db.text(),
            db.text()
        ))
        .await;
    }
    let agent = Agent::new(&source, &target, &[("items", "items")], "");
    // sled starts new log segments when it reopens: with 4 MiB it sometimes
    // still found no room after the filler was gone; 16 MiB leaves enough.
    let disk = match SmallDisk::mount(&agent.dir.path().join("state"), "16m") {
        Ok(disk) => disk,
        Err(e) => {
            eprintln!("SKIPPED: cannot mount a tmpfs for the state directory ({e}); needs root");
            return;
        }
    };
    agent.install().await;
    let mut child = agent
        .command(&["run"])
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    {
        let log = log.clone();
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                log.lock().unwrap().push(line);
            }
        });
    }
    source
        .exec("INSERT INTO items (label, body) VALUES ('before', 'x')")
        .await;
    eventually("the first row arrives", TIMEOUT, || async {
        target.count("SELECT count(*) FROM items").await == 1
    })
    .await;

    // GIVEN the disk under the state directory is full
    let filler = disk.fill();

    // WHEN rows are written on the source
    for n in 0..20 {
        source
            .exec(&format!(
                "INSERT INTO items (label, body) SELECT 'full-{n}-' || g, repeat('y', 200) FROM generate_series(1, 50) g"
            ))
            .await;
    }

    // THEN the agent reports that it cannot write its state, and retries
    eventually("the failing state store is reported", TIMEOUT, || async {
        log.lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("will retry") && l.contains("state store"))
    })
    .await;
    // AND the change rows it could not log are still in the change table
    assert!(
        source.pending_changes().await > 0,
        "change rows were deleted although the change log could not be written"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "the agent must keep running"
    );

    // WHEN space returns, THEN everything arrives, once
    std::fs::remove_file(filler).unwrap();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while target.count("SELECT count(*) FROM items").await != 1001 {
        if std::time::Instant::now() > deadline {
            let log = log.lock().unwrap();
            panic!(
                "not every row arrived after space returned; the agent's last words:\n{}",
                log[log.len().saturating_sub(5)..].join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sql = "SELECT label, body FROM items ORDER BY label";
    assert_eq!(source.rows(sql).await, target.rows(sql).await);
    assert_eq!(source.pending_changes().await, 0);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the agent must keep running"
    );
    let _ = child.kill().await;
    let _ = child.wait().await;
    drop(disk);
}
