#!/usr/bin/env bash
# Build the real LiveKit server (pinned tag) into a project-local cache, once; reused when present.
#   scripts/livekit-server.sh          build if missing, print the binary's path on stdout
#   scripts/livekit-server.sh --path   print where the binary lives (built or not), build nothing
# Needs Go (>= 1.26 for v1.13.5) and the Go module proxy. Without Go it says so and exits 3; the tests that
# need the server then skip (and fail under CI=true). The build takes a few minutes on 2 cores with a cold
# module cache ($HOME/go), well under a minute with a warm one.
set -euo pipefail

VERSION="${LIVEKIT_SERVER_VERSION:-v1.13.5}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/.cache/livekit-server/$VERSION"
BIN="$DIR/server"

say() { echo "livekit-server: $*" >&2; }

if [[ "${1:-}" == "--path" ]]; then
  echo "$BIN"; exit 0
fi
if [[ -x "$BIN" ]]; then
  echo "$BIN"; exit 0
fi
GO="${GO:-$(command -v go || true)}"
[[ -z "$GO" && -x /usr/local/go/bin/go ]] && GO=/usr/local/go/bin/go
if [[ -z "$GO" ]]; then
  say "Go is not installed: the real-server tests (pytest -m livekit_server) will skip"
  exit 3
fi
mkdir -p "$DIR"
log="$DIR/build.log"
say "building github.com/livekit/livekit-server/cmd/server@$VERSION with $("$GO" version | cut -d' ' -f3) (log: $log)"
start=$(date +%s)
if ! GOBIN="$DIR" GOFLAGS="-trimpath" "$GO" install "github.com/livekit/livekit-server/cmd/server@$VERSION" \
    > "$log" 2>&1; then
  tail -20 "$log" >&2
  say "the build failed (whole log in $log)"
  exit 1
fi
say "built $BIN in $(( $(date +%s) - start )) s"
echo "$BIN"
