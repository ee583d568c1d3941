#!/usr/bin/env bash
# A live worker's /metrics after a job, checked: `promtool check metrics` on what it serves, and
# every `harness_*` metric the runbook (docs/operations.md), the alert rules and the dashboard
# (deploy/monitoring/) name must be in it. Also `promtool check rules` on the alert rules.
#
# Runs the worker binary natively against the broker on 127.0.0.1:5672 (guest/guest), in a
# vhost of its own, with the binary's built-in demo agent and a bare repository over
# file://; cleans up after itself. Needs promtool (Debian's `prometheus` package; installed
# when missing and root). Every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'metrics-check: %s\n' "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v promtool >/dev/null 2>&1; then
  say "installing promtool (Debian's prometheus package)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
command -v promtool >/dev/null 2>&1 || fail "no promtool"

promtool check rules deploy/monitoring/alerts.yml >/dev/null || fail "promtool check rules"

timeout 1800 cargo build --locked --bin executor-harness 2>&1 | tail -n 1 >&2
bin="${PWD}/target/debug/executor-harness"

# Under target/, not /tmp: the agents' sandbox gives them a /tmp of their own.
tmp="$(mktemp -d "${PWD}/target/metrics-check.XXXXXX")"
# A vhost of its own: nothing shared with the tests or a deployment on the broker, and one
# delete removes every queue and exchange the worker declared.
vhost="metrics-check-$$"
worker_pid=""
cleanup() {
  if [ -n "${worker_pid}" ]; then
    kill "${worker_pid}" 2>/dev/null || true
    timeout 30 tail --pid="${worker_pid}" -f /dev/null || true
  fi
  rabbitmqctl -q delete_vhost "${vhost}" >/dev/null 2>&1 || true
  [ -n "${KEEP_TMP:-}" ] || rm -rf "${tmp}"
}
trap cleanup EXIT
rabbitmqctl -q add_vhost "${vhost}" >/dev/null
rabbitmqctl -q set_permissions -p "${vhost}" guest '.*' '.*' '.*' >/dev/null

git init -q -b main "${tmp}/seed"
printf '# greeter\n\nstatus: TODO\n' >"${tmp}/seed/README.md"
git -C "${tmp}/seed" add README.md
git -C "${tmp}/seed" -c user.name=metrics-check -c user.email=metrics-check@example.invalid \
  commit -q -m "Initial commit"
git clone -q --bare "${tmp}/seed" "${tmp}/origin.git"

# The agent runs sandboxed, as an unprivileged user when the worker is root: its program must
# be reachable by that user, which the build tree need not be.
chmod 0755 "${tmp}"
install -m 0755 "${bin}" "${tmp}/executor-harness"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export AMQP_URL="amqp://guest:guest@127.0.0.1:5672/${vhost}" HARNESS_WORK_DIR="${tmp}/work" \
  HARNESS_METRICS_LISTEN="127.0.0.1:${port}" HARNESS_PI_COMMAND="${tmp}/executor-harness demo-agent" \
  HARNESS_LOG_FORMAT=json
"${bin}" worker >"${tmp}/worker.log" 2>&1 &
worker_pid=$!
for _ in $(seq 1 60); do
  curl -fsS --max-time 2 "http://127.0.0.1:${port}/readyz" >/dev/null 2>&1 && break
  kill -0 "${worker_pid}" 2>/dev/null || fail "the worker exited: $(tail -n 3 "${tmp}/worker.log")"
  sleep 1
done
curl -fsS --max-time 2 "http://127.0.0.1:${port}/readyz" >/dev/null || fail "/readyz never answered 200"

cat >"${tmp}/job.json" <<JOB
{"jobId": "${vhost}-job", "mode": "coding", "systemPrompt": "You are the implementer.",
 "userPrompt": "Add a greeting file and mark the README done.", "model": "demo-model",
 "proxyBaseUrl": "http://127.0.0.1:9/v1", "sessionToken": "metrics-check-session-token",
 "ghToken": "metrics-check-git-token",
 "repo": {"owner": "demo", "name": "greeter", "baseBranch": "main", "cloneUrl": "file://${tmp}/origin.git"},
 "branch": "main", "newBranch": "metrics-check/greeting", "streamFollowUps": true}
JOB
timeout 180 "${bin}" enqueue "${tmp}/job.json" --wait --timeout 150 >/dev/null 2>"${tmp}/enqueue.err" ||
  fail "the job did not succeed: $(tail -n 3 "${tmp}/enqueue.err")"

curl -fsS --max-time 5 "http://127.0.0.1:${port}/metrics" >"${tmp}/metrics.txt" || fail "GET /metrics"
promtool check metrics <"${tmp}/metrics.txt" || fail "promtool check metrics"
grep -q '^harness_jobs_finished_total{failure_cause="none",mode="coding",state="done"} 1$' \
  "${tmp}/metrics.txt" || fail "the job is not counted as finished"

missing=()
for name in $(grep -ohE 'harness_[a-z_]+' docs/operations.md deploy/monitoring/alerts.yml \
  deploy/monitoring/dashboard.json | sed -E 's/_(bucket|sum|count)$//' | sort -u); do
  grep -qE "^# TYPE ${name} " "${tmp}/metrics.txt" || missing+=("${name}")
done
[ "${#missing[@]}" -eq 0 ] || fail "named but not served: ${missing[*]}"
say "ok: promtool accepts /metrics after a job; every metric the runbook, alerts and dashboard name is served"
