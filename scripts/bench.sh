#!/usr/bin/env bash
# Benchmark: the worker end to end (exactly-once, release build) against the Cassandra write ceiling of
# the scylla driver alone and against Flink's own Cassandra sink (write-ahead log and plain), then the
# stall when one of two workers is killed or stopped, in one run on the local servers. Prints Markdown
# tables for docs/benchmarks.md and docs/comparison.md.
#
#   scripts/bench.sh [-- --records N --keys K --partitions P --concurrency 64,256,1024 --rounds R
#                       --max-records M --in-flight-per-node N --worker-log --skip-flink --skip-recovery]
#   scripts/bench.sh -- --quick                          # 200,000 records, no Flink: for development
#   scripts/bench.sh -- --recovery-only --partitions 6
#   scripts/bench.sh -- --scaling                        # 6/64/512 partitions × 1/2/4 workers; writes docs/images/scaling.svg
#   scripts/bench.sh -- --cluster --records 200000 --keys 20000   # on the local clusters (3 Cassandra nodes,
#                                                     # 3 brokers), no Flink; (c) also kills a node and a broker
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/localenv.sh up
eval "$(scripts/localenv.sh env)"
case " $* " in
  *" --cluster "*)
    scripts/localenv.sh cluster up
    eval "$(scripts/localenv.sh cluster env)"
    ;;
esac
cargo build --release --locked -p cassandra-sink-worker -p cassandra-sink-tests --bin cassandra-sink-worker --bin cassandra-sink-bench
[ "${1:-}" = "--" ] && shift
case " $* " in
  *" --quick "* | *" --skip-flink "* | *" --recovery-only "* | *" --scaling "* | *" --cluster "*) ;;
  *)
    # The Flink job and its dependencies, from the Maven repository (cached in ~/.m2 after the first run).
    echo "building the Flink job (tests/flink)" >&2
    mvn -q -B -f tests/flink/pom.xml compile dependency:copy-dependencies
    ;;
esac
printf 'machine: %s cores, %s, %s\n' "$(nproc)" "$(free -g | awk '/Mem:/ {print $2 " GiB"}')" "$(date -u +%F)" >&2
target=${CARGO_TARGET_DIR:-target}/release
exec "$target/cassandra-sink-bench" --worker "$target/cassandra-sink-worker" "$@"
