#!/usr/bin/env bash
# The README's main-job command: sets everything up (idempotent), then runs warden's main job on
# an embedded default: a private containerd with NRI, `warden run`, a demo pod annotated with a
# built-in profile whose container tries allowed and forbidden things, the events warden
# reported, and a refused pod. Everything it starts is stopped and removed at exit.
#   sudo ./scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
bash scripts/containerd.sh
echo "== building warden"
cargo build --locked --bins 2>&1 | grep -E '^(error|\s+Finished)' || true
cargo rustc --locked -p warden-attempt --release --target "$(rustc -vV | sed -n 's/^host: //p')" \
    --bin warden-attempt -- -C target-feature=+crt-static 2>&1 | grep -E '^error' || true
[ -x target/debug/warden ] && [ -x target/debug/warden-demo ] || { echo "build failed"; exit 1; }

echo; echo "== what this kernel can enforce"
target/debug/warden probe
echo
exec target/debug/warden-demo
