#!/usr/bin/env bash
# Proves the runtime image (deploy/Dockerfile, stage runtime-prebuilt) runs a job end to end:
#
#   1. a Debian bookworm base image made from Debian's own packages (debootstrap + docker
#      import; no image registry is needed), cached as executor-harness-base:bookworm;
#   2. the image built around target/release/executor-harness (cargo build --release), with
#      Pi and its Node runtime installed from the npm registry by the Dockerfile;
#   3. the worker started in it on the host's network (never a bridge) against the broker on
#      127.0.0.1:5672 (guest/guest), on queues and exchanges named for this run only, with the
#      options docs/sandbox.md gives for the sandbox (seccomp profile, unmasked /proc, a
#      non-root user, no capabilities, no-new-privileges), a read-only root file system with
#      the state dir on a volume (as the Kubernetes Deployment) and HARNESS_SANDBOX=required;
#   4. one job enqueued with `executor-harness enqueue --wait` against a bare repository over
#      file:// mounted into the container, run by the demo's scripted agent;
#   5. /healthz, /readyz, /metrics, the container's HEALTHCHECK and `pi --version` checked;
#   6. container, queues and exchanges removed, and a dockerd this script started stopped.
#
# Where no Docker engine can run (no docker binary, or no daemon and none can be started) it
# prints `image-test: skipped (<reason>)` and exits 0. Every wait is bounded.
#
# Environment: IMAGE_TEST_BASE (base image tag), IMAGE_TEST_KEEP=1 (keep the container and the
# temp dir on failure), DEBIAN_MIRROR (debootstrap's mirror).
set -euo pipefail
cd "$(dirname "$0")/.."

base_image="${IMAGE_TEST_BASE:-executor-harness-base:bookworm}"
image="executor-harness:image-test"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
run_id="ehit-$(date +%s)-$$"
started_at=$(date +%s)

say() { printf 'image-test: %s\n' "$*" >&2; }
skip() {
  printf 'image-test: skipped (%s)\n' "$1"
  exit 0
}
fail() {
  say "FAILED: $*"
  exit 1
}
# step NAME: prints how long the previous step took, for the timings.
step_t=$(date +%s)
step_name=""
step() {
  local now
  now=$(date +%s)
  [ -z "${step_name}" ] || say "timing: ${step_name} $((now - step_t)) s"
  step_name="$1"
  step_t=${now}
  say "== $1"
}
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }

# --- A Docker engine, or a skip. ---
command -v docker >/dev/null 2>&1 || skip "no docker binary"
dockerd_pid=""
dockerd_log=""
if ! timeout 20 docker info >/dev/null 2>&1; then
  command -v dockerd >/dev/null 2>&1 || skip "no Docker daemon running and no dockerd to start"
  [ "$(id -u)" -eq 0 ] || skip "no Docker daemon running, and starting dockerd needs root"
  dockerd_log="$(mktemp /tmp/image-test-dockerd.XXXXXX)"
  say "starting dockerd (no bridge, no iptables); log ${dockerd_log}"
  # No default bridge at all: containers here only ever use the host's network.
  dockerd --bridge=none --iptables=false >"${dockerd_log}" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 1 60); do
    timeout 5 docker info >/dev/null 2>&1 && break
    kill -0 "${dockerd_pid}" 2>/dev/null || break
    sleep 1
  done
  if ! timeout 5 docker info >/dev/null 2>&1; then
    kill "${dockerd_pid}" 2>/dev/null || true
    skip "dockerd cannot start here: $(tail -n1 "${dockerd_log}")"
  fi
fi

tmp="$(mktemp -d /tmp/image-test.XXXXXX)"
container=""
cleanup() {
  local rc=$?
  set +e
  if [ -n "${container}" ]; then
    if [ "${rc}" -ne 0 ]; then
      say "worker log (last 40 lines):"
      timeout 20 docker logs --tail 40 "${container}" 2>&1 | sed 's/^/  | /' >&2
    fi
    if [ "${IMAGE_TEST_KEEP:-}" = 1 ] && [ "${rc}" -ne 0 ]; then
      say "kept container ${container} and ${tmp}"
    else
      timeout 60 docker rm -f -v "${container}" >/dev/null 2>&1
    fi
  fi
  if command -v rabbitmqctl >/dev/null 2>&1; then
    for q in jobs jobs.dead jobs.dead.watch results followups progress; do
      timeout 30 rabbitmqctl -q delete_queue "${run_id}.${q}" >/dev/null 2>&1
    done
    for x in dead events control; do
      # rabbitmqctl has no exchange deletion; the broker's own function does it.
      timeout 30 rabbitmqctl -q eval \
        "rabbit_exchange:delete(rabbit_misc:r(<<\"/\">>, exchange, <<\"${run_id}.${x}\">>), false, <<\"image-test\">>)." \
        >/dev/null 2>&1
    done
  fi
  if [ "${IMAGE_TEST_KEEP:-}" != 1 ] || [ "${rc}" -eq 0 ]; then
    # The bare repository belongs to the image's user; root removes it.
    rm -rf "${tmp}" 2>/dev/null || as_root rm -rf "${tmp}"
  fi
  if [ -n "${dockerd_pid}" ]; then
    kill "${dockerd_pid}" 2>/dev/null
    timeout 30 tail --pid="${dockerd_pid}" -f /dev/null 2>/dev/null
    rm -f "${dockerd_log}"
  fi
  exit "${rc}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. The base image. ---
step "base image ${base_image}"
if timeout 30 docker image inspect "${base_image}" >/dev/null 2>&1; then
  say "cached"
else
  [ "$(id -u)" -eq 0 ] || fail "debootstrap needs root to make ${base_image}"
  if ! command -v debootstrap >/dev/null 2>&1; then
    timeout 300 apt-get update -qq
    timeout 300 env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  fi
  rootfs="${tmp}/rootfs"
  say "debootstrap bookworm from ${mirror}"
  timeout 900 debootstrap --variant=minbase bookworm "${rootfs}" "${mirror}" \
    >"${tmp}/debootstrap.log" 2>&1 || {
    tail -n 20 "${tmp}/debootstrap.log" >&2
    fail "debootstrap"
  }
  # What debian:bookworm-slim also drops: the apt lists and caches.
  rm -rf "${rootfs}/var/lib/apt/lists/"* "${rootfs}/var/cache/apt/"*.bin
  timeout 300 tar -C "${rootfs}" -c . | timeout 300 docker import \
    -c 'CMD ["/bin/bash"]' - "${base_image}" >/dev/null
  rm -rf "${rootfs}"
fi

# --- 2. The binary and the image. ---
step "cargo build --release"
timeout 1800 cargo build --release --locked --bin executor-harness 2>&1 | tail -n 2 >&2
bin="${PWD}/target/release/executor-harness"
[ -x "${bin}" ] || fail "no ${bin}"

step "docker build --target runtime-prebuilt"
# The daemon's own builder: it needs no buildx plugin, and RUN steps reach the package
# registries over the host's network. It builds only the stages up to the target.
# A TLS-inspecting proxy's CA that this host trusts (Debian's local CA directory) must be
# trusted by npm in the build too.
ca_certs=""
for crt in /usr/local/share/ca-certificates/*.crt; do
  [ -f "${crt}" ] && ca_certs+="$(cat "${crt}")"$'\n'
done
DOCKER_BUILDKIT=0 timeout 1800 docker build --network host \
  -f deploy/Dockerfile --target runtime-prebuilt \
  --build-arg "BASE=${base_image}" --build-arg "BUILD_CA_CERTS=${ca_certs}" \
  -t "${image}" . >"${tmp}/build.log" 2>&1 || {
  tail -n 30 "${tmp}/build.log" >&2
  fail "docker build"
}

# --- 3. The remote, the configuration, the worker. ---
step "worker start"
install -d -m 0755 "${tmp}/git" "${tmp}/seed"
git init -q -b main "${tmp}/seed"
printf '# greeter\n\nstatus: TODO\n' >"${tmp}/seed/README.md"
git -C "${tmp}/seed" add README.md
git -C "${tmp}/seed" -c user.name=image-test -c user.email=image-test@example.invalid \
  commit -q -m "Initial commit"
git clone -q --bare "${tmp}/seed" "${tmp}/git/origin.git"
# The worker pushes as the image's user (10001).
as_root chown -R 10001:10001 "${tmp}/git/origin.git"

# The image's own config file with this run's topology names, so the run shares no queue with
# the tests or a real deployment on the same broker.
sed "s/= \"harness\./= \"${run_id}./" deploy/kubernetes/base/config.toml >"${tmp}/config.toml"
grep -q "jobs_queue = \"${run_id}.jobs\"" "${tmp}/config.toml" || fail "topology not renamed"
chmod 0644 "${tmp}/config.toml"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The broker URL is passed by name from this environment, never on a command line.
export AMQP_URL="amqp://guest:guest@127.0.0.1:5672/%2f"
container="${run_id}"
timeout 60 docker run -d --name "${container}" \
  --network host \
  --user 10001:10001 \
  --cap-drop ALL \
  --security-opt no-new-privileges \
  --security-opt "seccomp=${PWD}/deploy/kubernetes/seccomp-executor-harness.json" \
  --security-opt systempaths=unconfined \
  --read-only --tmpfs /tmp:rw,nosuid,nodev,mode=1777 \
  --health-interval 2s --health-start-period 30s \
  -v "${tmp}/config.toml:/etc/executor-harness/test.toml:ro" \
  -v "${tmp}/git:/srv/git" \
  -e AMQP_URL \
  -e HARNESS_CONFIG=/etc/executor-harness/test.toml \
  -e HARNESS_METRICS_LISTEN="127.0.0.1:${port}" \
  -e HARNESS_SANDBOX=required \
  -e HARNESS_PI_COMMAND="/usr/local/bin/executor-harness demo-agent" \
  -e JOB_CHECKPOINT_INTERVAL_MS=500 \
  "${image}" >/dev/null

ready=""
for _ in $(seq 1 60); do
  ready="$(curl -fsS --max-time 2 "http://127.0.0.1:${port}/readyz" 2>/dev/null)" && break
  [ "$(docker inspect -f '{{.State.Running}}' "${container}" 2>/dev/null)" = true ] ||
    fail "the worker exited: $(docker logs --tail 5 "${container}" 2>&1)"
  ready=""
  sleep 1
done
[ -n "${ready}" ] || fail "/readyz never answered 200"
say "/readyz: ${ready}"
[[ "${ready}" == *"sandbox: bubblewrap"* ]] || fail "the sandbox is not bubblewrap: ${ready}"

# --- 4. One job, followed to its result. ---
step "job (enqueue --wait)"
branch="image-test/add-greeting"
cat >"${tmp}/job.json" <<EOF
{
  "kind": "agent",
  "jobId": "${run_id}-job",
  "mode": "coding",
  "systemPrompt": "You are the implementer.",
  "userPrompt": "Add a greeting file and mark the README done.",
  "model": "demo-model",
  "proxyBaseUrl": "http://127.0.0.1:9/v1",
  "sessionToken": "image-test-session-token",
  "ghToken": "image-test-git-token",
  "repo": {"owner": "demo", "name": "greeter", "baseBranch": "main",
           "cloneUrl": "file:///srv/git/origin.git"},
  "branch": "main",
  "newBranch": "${branch}",
  "commitMessage": "Polish the README",
  "streamFollowUps": true
}
EOF
rc=0
timeout 180 "${bin}" enqueue "${tmp}/job.json" --config "${tmp}/config.toml" --wait --json \
  >"${tmp}/events.jsonl" 2>"${tmp}/enqueue.err" || rc=$?
[ "${rc}" -eq 0 ] || {
  cat "${tmp}/enqueue.err" >&2
  tail -n 5 "${tmp}/events.jsonl" >&2
  fail "enqueue --wait exited ${rc}"
}
python3 - "${tmp}/events.jsonl" <<'EOF' || fail "the job's events are not as expected"
import json, sys
events = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
results = [e for e in events if e.get("type") == "result"]
assert len(results) == 1, f"{len(results)} results"
r = results[0]
assert r["state"] == "done" and "error" not in r, r
assert r["result"]["pushed"] is True, r["result"]
kinds = {e.get("type") for e in events}
assert {"progress", "followup"} <= kinds, kinds
print(f"image-test: result done, pushed {r['result']['branch']}, "
      f"{len(events)} events ({', '.join(sorted(kinds))})", file=sys.stderr)
EOF
git --git-dir="${tmp}/git/origin.git" -c safe.directory='*' log --format=%s "${branch}" \
  >"${tmp}/log.txt" || fail "branch ${branch} not pushed"
grep -q "Add hello.txt" "${tmp}/log.txt" || fail "the agent's commit is not on ${branch}"

# --- 5. Health, metrics, the image's HEALTHCHECK, Pi. ---
step "health, metrics, pi"
health="$(curl -fsS --max-time 5 "http://127.0.0.1:${port}/healthz")" || fail "/healthz"
[[ "${health}" == *'"status":"ok"'* ]] || fail "/healthz: ${health}"
metrics="$(curl -fsS --max-time 5 "http://127.0.0.1:${port}/metrics")" || fail "/metrics"
grep -Eq '^harness_jobs_finished_total\{[^}]*state="done"[^}]*\} 1$' <<<"${metrics}" ||
  fail "/metrics has no finished job: $(grep harness_jobs_finished_total <<<"${metrics}")"
grep -Eq '^harness_sandbox_active\{mechanism="bubblewrap"\} 1$' <<<"${metrics}" ||
  fail "/metrics: the sandbox is not active"
status=""
for _ in $(seq 1 30); do
  status="$(docker inspect -f '{{.State.Health.Status}}' "${container}")"
  [ "${status}" = healthy ] && break
  sleep 1
done
[ "${status}" = healthy ] || fail "the container's health is ${status}"
pi_version="$(timeout 60 docker exec -e HOME=/tmp -e PI_OFFLINE=1 "${container}" pi --version 2>&1)" ||
  fail "pi --version in the image: ${pi_version}"
node_version="$(timeout 30 docker exec "${container}" node --version)" || fail "node --version"
say "/healthz: ${health}"
say "pi ${pi_version}, node ${node_version}, image $(docker image inspect -f '{{.Size}}' "${image}" | awk '{printf "%.0f MB", $1/1e6}')"

# A clean drain: SIGTERM, exit 0.
step "drain"
timeout 60 docker stop -t 40 "${container}" >/dev/null || fail "docker stop"
code="$(docker inspect -f '{{.State.ExitCode}}' "${container}")"
[ "${code}" = 0 ] || fail "the worker exited ${code} after SIGTERM"
step "done"
say "passed in $(($(date +%s) - started_at)) s"
