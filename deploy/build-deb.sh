#!/usr/bin/env bash
# Builds the Debian package: the release binary, its manual page and shell
# completions (generated from the command line itself), then cargo-deb.
# Needs cargo-deb: cargo install cargo-deb
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -p tandem-agent
agent="$target/release/tandem-agent"
"$agent" man > "$target/release/tandem-agent.1"
"$agent" completions bash > "$target/release/tandem-agent.bash"
"$agent" completions zsh > "$target/release/_tandem-agent"
"$agent" completions fish > "$target/release/tandem-agent.fish"
cargo deb -p tandem-agent --no-build "$@"
