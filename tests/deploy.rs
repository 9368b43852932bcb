//! An operator's story: putting `tandem-agent` on a host as a service. The
//! unit is one systemd accepts and that is locked down; `install.sh` puts the
//! binary, the unit and the example config where the unit expects them; the
//! `.deb` holds the same files and sets up the `tandem` user; the example
//! config is one the agent accepts. Steps that need a tool the host lacks
//! (systemd-analyze, cargo-deb, dpkg, shellcheck, man) print `SKIPPED: ...` to
//! stderr and pass.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tandem_agent::config::Config;

const AGENT: &str = env!("CARGO_BIN_EXE_tandem-agent");
const UNIT: &str = "tandem-agent@.service";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("agent/ has a parent")
        .to_path_buf()
}

fn deploy(file: &str) -> PathBuf {
    repo().join("deploy").join(file)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// A scratch directory inside the target directory (not /tmp, which may be
/// mounted noexec: installed binaries are run from here).
fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("deploy-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("scratch dir")
}

fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `cmd`; panics with its output unless it succeeds.
fn succeeds(cmd: &mut Command) -> Output {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// Whether `program args` runs and exits 0 (a probe for optional tools).
fn available(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|out| out.status.success())
}

fn skipped(why: &str) {
    eprintln!("SKIPPED: {why}");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// The Markdown files under `dir`, subfolders included.
fn markdown_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            found.extend(markdown_files(&path));
        } else if path.extension().is_some_and(|e| e == "md") {
            found.push(path);
        }
    }
    found
}

/// The installed binary is the agent: it prints its name and version.
fn runs_version(binary: &Path) {
    let out = succeeds(Command::new(binary).arg("--version"));
    let version = text(&out.stdout);
    assert_eq!(
        version.trim(),
        format!("tandem-agent {}", env!("CARGO_PKG_VERSION")),
        "{}",
        binary.display()
    );
}

/// The unit's `Key=value` settings, in order (comments and sections left out).
fn settings(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with(['#', ';', '[']))
        .map(|line| {
            let (key, value) = line.split_once('=').expect("Key=value");
            (key.trim().to_owned(), value.trim().to_owned())
        })
        .collect()
}

fn values<'a>(settings: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    settings
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn the_unit_runs_one_checked_instance_per_integration_and_is_locked_down() {
    let unit = settings(&read(&deploy(UNIT)));
    let one = |key: &str| {
        let found = values(&unit, key);
        assert_eq!(found.len(), 1, "{key}: expected one setting, got {found:?}");
        found[0].to_owned()
    };

    // Instance NAME reads /etc/tandem/NAME.toml, checked before every start.
    assert_eq!(
        one("ExecStartPre"),
        "/usr/bin/tandem-agent check --config /etc/tandem/%i.toml"
    );
    assert_eq!(
        one("ExecStart"),
        "/usr/bin/tandem-agent run --config /etc/tandem/%i.toml"
    );
    // Its state is /var/lib/tandem/NAME, and that is the only writable path.
    assert_eq!(one("StateDirectory"), "tandem/%i");
    assert_eq!(one("ReadWritePaths"), "/var/lib/tandem/%i");
    assert_eq!(one("ProtectSystem"), "strict");
    // The agent says when it is ready and pings the watchdog.
    assert_eq!(one("Type"), "notify");
    assert_eq!(one("NotifyAccess"), "main");
    assert!(!one("WatchdogSec").is_empty());
    assert_eq!(one("Restart"), "on-failure");
    assert!(!one("RestartSec").is_empty());
    assert_eq!(one("Environment"), "TANDEM_LOG_FORMAT=json");
    assert_eq!(one("User"), "tandem");
    assert_eq!(one("Group"), "tandem");
    assert_eq!(one("CapabilityBoundingSet"), "");
    assert_eq!(one("RestrictAddressFamilies"), "AF_UNIX AF_INET AF_INET6");
    for key in [
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "NoNewPrivileges",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "RestrictNamespaces",
        "LockPersonality",
        "MemoryDenyWriteExecute",
    ] {
        assert_eq!(one(key), "yes", "{key}");
    }
    assert_eq!(one("SystemCallArchitectures"), "native");
    assert_eq!(one("WantedBy"), "multi-user.target");
}

/// A copy of the unit as instance `test`, running the binary under test
/// (systemd-analyze checks that the executables exist).
fn unit_for_systemd_analyze(dir: &Path) -> PathBuf {
    let unit = read(&deploy(UNIT)).replace("/usr/bin/tandem-agent", AGENT);
    let path = dir.join("tandem-agent@test.service");
    std::fs::write(&path, unit).expect("write unit copy");
    path
}

#[test]
fn systemd_accepts_the_unit() {
    if !available("systemd-analyze", &["--version"]) {
        return skipped("systemd-analyze not found");
    }
    let dir = scratch();
    let unit = unit_for_systemd_analyze(dir.path());
    let mut verify = Command::new("systemd-analyze");
    verify.arg("verify");
    // The unit's `man:tandem-agent(1)` is checked by running `man`: give it
    // the page the package installs, generated as deploy/build-deb.sh does.
    if available("man", &["--version"]) {
        let man1 = dir.path().join("man/man1");
        std::fs::create_dir_all(&man1).unwrap();
        let page = succeeds(Command::new(AGENT).arg("man"));
        std::fs::write(man1.join("tandem-agent.1"), &page.stdout).unwrap();
        verify.env("MANPATH", dir.path().join("man"));
    } else {
        skipped("man not found: the unit's man: link is not checked");
        verify.arg("--man=no");
    }
    let out = output(verify.arg(&unit));
    let complaints = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success() && complaints.trim().is_empty(),
        "systemd-analyze verify {} ({}):\n{complaints}",
        unit.display(),
        out.status
    );

    // systemd's own exposure rating (0 = locked down, 10 = none); only
    // systemd 250+ rates a unit file that is not loaded.
    let out = output(
        Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--threshold=20"])
            .arg(&unit),
    );
    let report = format!("{}{}", text(&out.stdout), text(&out.stderr));
    if report.contains("--offline") || report.contains("unrecognized option") {
        return skipped("systemd-analyze security --offline not supported");
    }
    assert!(
        out.status.success(),
        "exposure above 2.0 ({}):\n{report}",
        out.status
    );
}

#[test]
fn install_sh_puts_binary_unit_and_example_where_the_unit_expects_them() {
    let dir = scratch();
    let root = dir.path().join("root");

    // A dry run prints the steps and writes nothing.
    let out = succeeds(
        Command::new("bash")
            .arg(deploy("install.sh"))
            .args(["--dry-run", "--binary", AGENT, "--root"])
            .arg(&root),
    );
    let said = text(&out.stdout);
    assert!(
        said.contains("would run: install -D -m 0755"),
        "dry run:\n{said}"
    );
    assert!(!root.exists(), "a dry run wrote {}", root.display());

    // Into a scratch root: files and modes; host changes only printed.
    let out = succeeds(
        Command::new("bash")
            .arg(deploy("install.sh"))
            .args(["--binary", AGENT, "--root"])
            .arg(&root),
    );
    let said = text(&out.stdout);
    for step in [
        "would run (not with --root): useradd --system",
        "would run (not with --root): chown root:tandem",
        "would run (not with --root): systemctl daemon-reload",
        "systemctl enable --now tandem-agent@NAME",
    ] {
        assert!(said.contains(step), "expected {step:?} in:\n{said}");
    }

    let binary = root.join("usr/bin/tandem-agent");
    let unit = root.join("etc/systemd/system").join(UNIT);
    let etc = root.join("etc/tandem");
    let sample = etc.join("example.toml.sample");
    assert_eq!(mode(&binary), 0o755);
    assert_eq!(mode(&unit), 0o644);
    assert_eq!(mode(&etc), 0o750);
    assert_eq!(mode(&sample), 0o640);
    assert_eq!(read(&unit), read(&deploy(UNIT)));
    assert_eq!(read(&sample), read(&deploy("example.toml")));
    runs_version(&binary);

    // Run again (an upgrade): same result, no error.
    succeeds(
        Command::new("bash")
            .arg(deploy("install.sh"))
            .args(["--binary", AGENT, "--root"])
            .arg(&root),
    );
    runs_version(&binary);

    // A binary that is not there is refused with the way to build it.
    let out = output(
        Command::new("bash")
            .arg(deploy("install.sh"))
            .args(["--binary", "/nonexistent/tandem-agent", "--root"])
            .arg(dir.path().join("other")),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cargo build --release"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_example_config_is_accepted_and_keeps_its_state_where_the_unit_allows() {
    let path = Path::new("/etc/tandem/example.toml");
    let config = Config::parse(path, &read(&deploy("example.toml")))
        .unwrap_or_else(|e| panic!("deploy/example.toml: {e}"));
    assert_eq!(config.state_dir, Path::new("/var/lib/tandem/example"));
    assert_eq!(config.tables.len(), 2);
}

#[test]
fn the_debian_package_holds_the_same_files_and_sets_up_the_user() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    if !available(&cargo, &["deb", "--version"]) {
        return skipped("cargo-deb not installed");
    }
    if !available("dpkg-deb", &["--version"]) {
        return skipped("dpkg-deb not found");
    }
    // Package the binary under test: a target directory of our own whose
    // release binary is it, so `--no-build` packages without a release build.
    let dir = scratch();
    let target = dir.path().join("target");
    std::fs::create_dir_all(target.join("release")).unwrap();
    std::fs::copy(AGENT, target.join("release/tandem-agent")).unwrap();
    // The manual page and completions, generated as deploy/build-deb.sh does.
    let assets = target.join("release");
    std::fs::create_dir_all(&assets).unwrap();
    for (args, file) in [
        (&["man"][..], "tandem-agent.1"),
        (&["completions", "bash"][..], "tandem-agent.bash"),
        (&["completions", "zsh"][..], "_tandem-agent"),
        (&["completions", "fish"][..], "tandem-agent.fish"),
    ] {
        let out = succeeds(Command::new(AGENT).args(args));
        std::fs::write(assets.join(file), &out.stdout).unwrap();
    }
    let out_dir = dir.path().join("out");
    succeeds(
        Command::new(&cargo)
            .current_dir(repo())
            .env("CARGO_TARGET_DIR", &target)
            .args([
                "deb",
                "-p",
                "tandem-agent",
                "--no-build",
                "--fast",
                "--output",
            ])
            .arg(&out_dir),
    );
    let debs: Vec<PathBuf> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "{debs:?}");
    let deb = &debs[0];

    // The control fields.
    let field = |name: &str| {
        let out = succeeds(Command::new("dpkg-deb").arg("-f").arg(deb).arg(name));
        text(&out.stdout).trim().to_owned()
    };
    assert_eq!(field("Package"), "tandem-agent");
    assert_eq!(field("Maintainer"), "Tandem developers");
    assert_eq!(field("Section"), "database");
    let depends = field("Depends");
    assert!(depends.split(", ").any(|d| d == "adduser"), "{depends}");
    assert!(depends.contains("libc6"), "$auto resolved: {depends}");

    // The files, with their modes.
    let root = dir.path().join("root");
    succeeds(Command::new("dpkg").arg("-x").arg(deb).arg(&root));
    let binary = root.join("usr/bin/tandem-agent");
    let unit = root.join("lib/systemd/system").join(UNIT);
    let doc = root.join("usr/share/doc/tandem-agent");
    let sample = root.join("etc/tandem/example.toml.sample");
    assert_eq!(mode(&binary), 0o755);
    assert_eq!(mode(&unit), 0o644);
    assert_eq!(read(&unit), read(&deploy(UNIT)));
    assert_eq!(
        read(&doc.join("example.toml")),
        read(&deploy("example.toml"))
    );
    assert_eq!(read(&sample), read(&deploy("example.toml")));
    assert_eq!(mode(&sample), 0o640);
    assert_eq!(
        read(&doc.join("README.md")),
        read(&repo().join("README.md"))
    );
    // The manual: every page of docs/, at the same path under docs/.
    let pages = markdown_files(&repo().join("docs"));
    assert!(
        pages.iter().any(|p| p.ends_with("docs/README.md")),
        "{pages:?}"
    );
    for page in &pages {
        let relative = page.strip_prefix(repo()).expect("under the repository");
        assert_eq!(
            read(&doc.join(relative)),
            read(page),
            "{}",
            relative.display()
        );
        assert_eq!(mode(&doc.join(relative)), 0o644, "{}", relative.display());
    }
    runs_version(&binary);
    let man = read(&root.join("usr/share/man/man1/tandem-agent.1"));
    assert!(man.contains(".TH tandem-agent 1"), "{man}");
    assert!(
        read(&root.join("usr/share/bash-completion/completions/tandem-agent"))
            .contains("tandem-agent")
    );

    // The maintainer scripts: the user on configure, gone on purge; the
    // sample is a conffile (local edits survive upgrades).
    let control = dir.path().join("control");
    succeeds(Command::new("dpkg-deb").arg("-e").arg(deb).arg(&control));
    let conffiles = read(&control.join("conffiles"));
    assert!(
        conffiles
            .lines()
            .any(|l| l == "/etc/tandem/example.toml.sample"),
        "{conffiles}"
    );
    let postinst = read(&control.join("postinst"));
    assert!(
        postinst.contains("adduser --system --group --home /var/lib/tandem"),
        "{postinst}"
    );
    assert!(postinst.contains("systemctl daemon-reload"), "{postinst}");
    let postrm = read(&control.join("postrm"));
    assert!(
        postrm.contains("purge)") && postrm.contains("deluser"),
        "{postrm}"
    );
    for script in ["postinst", "prerm", "postrm"] {
        assert_eq!(mode(&control.join(script)), 0o755, "{script}");
    }
}

#[test]
fn the_scripts_parse_and_are_shellcheck_clean() {
    let scripts = [
        ("bash", deploy("install.sh")),
        ("sh", deploy("debian/postinst")),
        ("sh", deploy("debian/prerm")),
        ("sh", deploy("debian/postrm")),
    ];
    for (shell, script) in &scripts {
        succeeds(Command::new(shell).arg("-n").arg(script));
    }
    if !available("shellcheck", &["--version"]) {
        return skipped("shellcheck not found");
    }
    succeeds(Command::new("shellcheck").args(scripts.iter().map(|(_, script)| script)));
}
