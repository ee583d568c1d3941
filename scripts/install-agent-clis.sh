#!/usr/bin/env bash
# Install the subscription agent CLIs, Claude Code and Codex, into project-local,
# cacheable prefixes, so integration tests can drive the real `claude` and
# `codex` (tests/integration/real_subscription.rs).
#
# Usage: eval "$(scripts/install-agent-clis.sh)"
#
#   CLAUDE_CODE_VERSION  @anthropic-ai/claude-code version (default 2.1.197,
#                        the version the production image ships).
#   CODEX_VERSION        @openai/codex version (default 0.142.4, likewise).
#   AGENT_CLIS_CACHE     cache root (default $HOME/.cache/executor-harness);
#                        the CLIs go to <root>/claude-code/<version> and
#                        <root>/codex/<version>.
#
# Progress goes to stderr; stdout is two lines, `export CLAUDE_BIN=...` and
# `export CODEX_BIN=...`, for `eval`.
#
# Idempotent: a prefix holding the `.complete` marker is reused as is. Each
# install is built in a sibling temporary directory and moved into place only
# after `<cli> --version` ran, so an interrupted install is redone, never reused.
#
# Both CLIs are native binaries shipped inside npm packages (an optional
# dependency per platform); nothing is downloaded at install or run time.
#   - Claude Code: the package's postinstall (`node install.cjs`, any node >= 18)
#     copies the platform binary over bin/claude.exe; that binary needs no node.
#   - Codex: bin/codex.js (node >= 16) finds the platform binary and runs it
#     with its bundled tools (rg) on PATH.
# So the system node and npm do; no private Node runtime is installed.
set -euo pipefail

claude_version="${CLAUDE_CODE_VERSION:-2.1.197}"
codex_version="${CODEX_VERSION:-0.142.4}"
cache="${AGENT_CLIS_CACHE:-${HOME}/.cache/executor-harness}"

# install_cli NAME PACKAGE VERSION BIN: installs PACKAGE@VERSION into
# <cache>/NAME/VERSION unless it is there, and prints the absolute path of BIN
# (relative to the prefix).
install_cli() {
  local name="$1" package="$2" version="$3" bin="$4"
  local prefix="${cache}/${name}/${version}"
  if [[ -f "${prefix}/.complete" && -x "${prefix}/${bin}" ]]; then
    echo "install-agent-clis: ${package}@${version} already installed in ${prefix}" >&2
    echo "${prefix}/${bin}"
    return 0
  fi
  mkdir -p "${cache}/${name}"
  local staging
  staging="$(mktemp -d "${cache}/${name}/.install-${version}.XXXXXX")"
  # shellcheck disable=SC2064 # expand now: the trap must remove this staging dir.
  trap "rm -rf '${staging}'" EXIT
  cat >"${staging}/package.json" <<EOF
{
  "name": "executor-harness-${name}",
  "private": true,
  "dependencies": { "${package}": "${version}" }
}
EOF
  echo "install-agent-clis: installing ${package}@${version} into ${prefix}" >&2
  # Install scripts stay on: Claude Code's postinstall puts its native binary in place.
  (cd "${staging}" && npm install --no-audit --no-fund --omit=dev --loglevel=error \
    --no-update-notifier >&2)

  local smoke_home="${staging}/.smoke-home" got
  # Codex refuses a CODEX_HOME that does not exist.
  mkdir -p "${smoke_home}/.claude" "${smoke_home}/.codex"
  got="$(HOME="${smoke_home}" CLAUDE_CONFIG_DIR="${smoke_home}/.claude" \
    CODEX_HOME="${smoke_home}/.codex" DISABLE_AUTOUPDATER=1 \
    "${staging}/${bin}" --version 2>&1)" || {
    echo "install-agent-clis: ${name} --version failed: ${got}" >&2
    exit 1
  }
  rm -rf "${smoke_home}"
  echo "install-agent-clis: ${name} --version: ${got}" >&2
  touch "${staging}/.complete"
  chmod 0755 "${staging}"
  rm -rf "${prefix}"
  mv "${staging}" "${prefix}"
  trap - EXIT
  echo "${prefix}/${bin}"
}

claude_bin="$(install_cli claude-code @anthropic-ai/claude-code "${claude_version}" \
  node_modules/.bin/claude)"
codex_bin="$(install_cli codex @openai/codex "${codex_version}" node_modules/.bin/codex)"
printf 'export CLAUDE_BIN=%q\n' "${claude_bin}"
printf 'export CODEX_BIN=%q\n' "${codex_bin}"
