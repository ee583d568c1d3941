#!/usr/bin/env bash
# The benchmark of issue 14: the worker against a git-CLI script doing the same work, against
# the real RabbitMQ on 127.0.0.1:5672 (guest/guest), over file:// and smart HTTP on loopback.
# Prints a table and rewrites docs/benchmarks.md (the method is there).
#
#   scripts/bench.sh [--quick] [--out FILE] [--no-perf]
#
# Runs in a RabbitMQ vhost and scratch directories of its own (on /dev/shm where there is
# one), all removed at the end; every process it starts dies with it, and the whole run is
# bounded by BENCH_TIMEOUT seconds (default 1800).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'bench: %s\n' "$*" >&2; }
command -v rabbitmqctl >/dev/null || { say "needs RabbitMQ (scripts/test.sh installs and starts it)"; exit 1; }
command -v bwrap >/dev/null || say "no bubblewrap: the worker's agents run unsandboxed"

# Two builds, not one: an example brings the dev-dependencies' features, and the binary measured
# must be the release build as shipped.
timeout 1800 cargo build --release --locked --bin executor-harness 2>&1 | tail -n 1 >&2
timeout 1800 cargo build --release --locked --example bench_probe 2>&1 | tail -n 1 >&2

shm=/dev/shm
[ -d "$shm" ] && [ -w "$shm" ] || shm="${PWD}/target"
tmp="$(mktemp -d "${shm}/executor-harness-bench.XXXXXX")"
# The agent's program outside /dev (the sandbox mounts a /dev of its own).
chmod 0755 "${tmp}"  # the agents' user must reach the work dir inside it
agent_dir="$(mktemp -d "${PWD}/target/bench-agent.XXXXXX")"
vhost="bench-$$"
cleanup() {
  rabbitmqctl -q delete_vhost "${vhost}" >/dev/null 2>&1 || true
  rm -rf "${tmp}" "${agent_dir}"
}
trap cleanup EXIT
rabbitmqctl -q add_vhost "${vhost}" >/dev/null
rabbitmqctl -q set_permissions -p "${vhost}" guest '.*' '.*' '.*' >/dev/null

AMQP_URL="amqp://guest:guest@127.0.0.1:5672/${vhost}" timeout "${BENCH_TIMEOUT:-1800}" \
  python3 scripts/bench/bench.py --tmp "${tmp}" --agent-dir "${agent_dir}" \
  --binary "${PWD}/target/release/executor-harness" \
  --probe "${PWD}/target/release/examples/bench_probe" "$@"
