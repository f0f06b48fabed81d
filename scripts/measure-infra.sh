#!/usr/bin/env bash
# Measures the local infrastructure as a newcomer meets it: a fresh clone with every cache empty (Maven,
# Go modules and build cache, pip, cargo registry and target), on ports of its own so it can run beside
# a developer's servers. Prints a Markdown table for docs/infrastructure.md.
#
#   scripts/measure-infra.sh [WORKDIR]     (default: a new folder under /tmp; deleted at the end)
#
# Steps: (1) the test command cold, which includes a cold `localenv.sh up`; (2) `localenv.sh down`, then
# `up` again with everything cached (warm start); (3) the test command again (warm); (4) each server's
# resident memory after the tests.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=${1:-$(mktemp -d /tmp/cassandra-sink-measure.XXXXXX)}
mkdir -p "$work"

git clone -q "$repo" "$work/repo"
export LOCALENV_CACHE="$work/cache" LOCALENV_STATE="$work/state"
export GOMODCACHE="$work/gomod" GOCACHE="$work/gocache" GOFLAGS=-modcacherw
export MAVEN_OPTS="-Dmaven.repo.local=$work/m2" PIP_NO_CACHE_DIR=1
export CARGO_HOME="$work/cargo" CARGO_TARGET_DIR="$work/target"
export CASSANDRA_PORT=19042 CASSANDRA_STORAGE_PORT=17000 KAFKA_PORT=19092 KAFKA_CONTROLLER_PORT=19093
export CASSANDRA_AUTH_PORT=19043 CASSANDRA_AUTH_STORAGE_PORT=17010 KAFKA_SASL_SSL_PORT=19094
export ETCD_PORT=12379 ETCD_PEER_PORT=12380 APISERVER_PORT=16443
cd "$work/repo"
unset CI
trap 'scripts/localenv.sh down >/dev/null 2>&1; chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

timed() {
  local label=$1 start=$SECONDS
  shift
  "$@" >"$work/$label.log" 2>&1 || { tail -n 40 "$work/$label.log" >&2; echo "failed: $label" >&2; exit 1; }
  echo $((SECONDS - start))
}

cold_test=$(timed cold-test scripts/test.sh)
cold_up=$(sed -n 's/.*all servers ready in \([0-9]*\)s.*/\1/p' "$work/cold-test.log" | head -n 1)
scripts/localenv.sh down >/dev/null 2>&1
warm_up=$(timed warm-up scripts/localenv.sh up)
warm_test=$(timed warm-test scripts/test.sh)
passed=$(grep -o '[0-9]* passed' "$work/warm-test.log" | awk '{n+=$1} END {print n}')

printf '| step | seconds |\n| --- | --- |\n'
printf '| `scripts/test.sh`, nothing cached (includes the cold `up`) | %s |\n' "$cold_test"
printf '| `scripts/localenv.sh up` inside it, nothing cached | %s |\n' "$cold_up"
printf '| `scripts/localenv.sh up`, servers stopped, everything cached | %s |\n' "$warm_up"
printf '| `scripts/test.sh`, servers up, everything cached (%s tests passed) | %s |\n' "$passed" "$warm_test"
printf '\n| server | resident memory (MiB) after the tests |\n| --- | --- |\n'
scripts/localenv.sh status | awk '/running/ {printf "| %s | %s |\n", $1, $6}'
