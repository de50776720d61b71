#!/usr/bin/env bash
# Builds the deb and the rpm from one release build:
#   bash packaging/build.sh        -> $CARGO_TARGET_DIR/debian/warden_*.deb, .../generate-rpm/warden-*.rpm
# Needs cargo-deb and cargo-generate-rpm (tests/packaging/test.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-$PWD/target}
export CARGO_TARGET_DIR=$target

cargo build --locked --release -p warden
bin=$target/release/warden

# Completions and man page come from the binary's own clap definition (hidden subcommands), so
# they always match the CLI that ships.
gen=packaging/generated
rm -rf "$gen"; mkdir -p "$gen"
"$bin" completions bash >"$gen/warden.bash"
"$bin" completions zsh >"$gen/_warden"
"$bin" completions fish >"$gen/warden.fish"
"$bin" manpage | gzip -9n >"$gen/warden.1.gz"

# --no-build: package exactly the binary built above (no second build).
cargo deb --no-build -p warden
# The rpm takes the same binary (cargo-generate-rpm never builds).
cargo generate-rpm -p hook --target-dir "$target"   # -p: the crate's folder
ls -1 "$target"/debian/warden_*.deb "$target"/generate-rpm/warden-*.rpm
