#!/usr/bin/env bash
# The test suite on any machine with a Rust toolchain: installs and starts what the tests need
# when it is missing, then runs `cargo test --locked` (extra arguments are passed on).
#
#   - git, RabbitMQ, bubblewrap (the agents' sandbox), Node.js and npm, from Debian's packages
#     (with sudo when not root);
#   - RabbitMQ started on 127.0.0.1:5672 (guest/guest) when it is not running;
#   - the real `pi` CLI (scripts/install-pi.sh) and the Claude Code and Codex CLIs
#     (scripts/install-agent-clis.sh), into caches reused by later runs: under /opt as root,
#     where the sandbox's unprivileged user can run them, else under ~/.cache. A CLI that
#     cannot be installed is not fatal: its tests are reported as ignored.
#
# `.ci/run` calls this script, then runs the broker-wide fault scenarios alone.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "test.sh: $*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

need_apt=()
command -v git >/dev/null 2>&1 || need_apt+=(git)
command -v rabbitmq-server >/dev/null 2>&1 || need_apt+=(rabbitmq-server)
command -v bwrap >/dev/null 2>&1 || need_apt+=(bubblewrap)
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
if [ "${#need_apt[@]}" -gt 0 ]; then
  say "installing ${need_apt[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# The integration tests talk to a real broker on 127.0.0.1:5672 (guest/guest).
if ! timeout 30 rabbitmqctl status >/dev/null 2>&1; then
  say "starting RabbitMQ"
  as_root rabbitmq-server -detached
  timeout 120 rabbitmqctl await_startup >/dev/null
fi
timeout 60 rabbitmqctl status >/dev/null

if [ "$(id -u)" -eq 0 ]; then
  export PI_PREFIX="${PI_PREFIX:-/opt/executor-harness/pi/${PI_VERSION:-0.80.3}}"
  export AGENT_CLIS_CACHE="${AGENT_CLIS_CACHE:-/opt/executor-harness}"
fi

# One retry each: a registry hiccup should not cost the real-CLI tests.
if [ -z "${PI_BIN:-}" ]; then
  if PI_BIN="$(scripts/install-pi.sh | tail -n1)" || PI_BIN="$(scripts/install-pi.sh | tail -n1)"; then
    export PI_BIN
  else
    say "WARNING: pi could not be installed; its tests are ignored"
    unset PI_BIN
  fi
fi
if [ -z "${CLAUDE_BIN:-}" ] || [ -z "${CODEX_BIN:-}" ]; then
  if clis="$(scripts/install-agent-clis.sh)" || clis="$(scripts/install-agent-clis.sh)"; then
    eval "${clis}"
  else
    say "WARNING: the Claude Code and Codex CLIs could not be installed; their tests are ignored"
  fi
fi
say "PI_BIN=${PI_BIN:-} CLAUDE_BIN=${CLAUDE_BIN:-} CODEX_BIN=${CODEX_BIN:-}"

exec cargo test --locked "$@"
