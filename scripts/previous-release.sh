#!/usr/bin/env bash
# Builds the worker of the last release that read one topic per sink into target/previous-release/:
# the upgrade test runs it, kills it mid-stream, and has this release continue on the committer rows it
# left (tests/tests/integration/topics.rs). The source comes from git (`git archive`, no network); the
# build shares the workspace's target folder, so only the worker crate itself compiles.
#
# Run it before building this release's binaries: the shared build leaves the old worker in
# target/debug/ until the next `cargo build` puts this release's back (scripts/test.sh does both).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

# main before several topics per sink (committer rows keyed by the sink id alone).
commit=58ab0bcb93efa72983b3f479b2d683d1f0cf9c7e
out=$root/target/previous-release

if [ -x "$out/cassandra-sink-worker" ] && [ "$(cat "$out/commit" 2>/dev/null)" = "$commit" ]; then
  exit 0
fi
if ! git cat-file -e "$commit^{commit}" 2>/dev/null; then
  echo "previous-release: commit $commit is not in this clone (a shallow clone?); \`git fetch --unshallow\` brings it" >&2
  exit 1
fi
source_tree=$(mktemp -d)
trap 'rm -rf "$source_tree"' EXIT
git archive "$commit" | tar -x -C "$source_tree"
(cd "$source_tree" && CARGO_TARGET_DIR="$root/target" cargo build -p cassandra-sink-worker --bin cassandra-sink-worker --locked)
mkdir -p "$out"
cp "$root/target/debug/cassandra-sink-worker" "$out/cassandra-sink-worker"
echo "$commit" > "$out/commit"
echo "previous-release: $out/cassandra-sink-worker built from $commit" >&2
