#!/bin/sh
# The baseline: what a git-CLI script does for one job, on the same transport and with the same
# agent as the worker. Clone the base branch (depth 1, single branch, as the seed does), create
# the work branch, run the agent, commit what it left, push. Prints `key=epoch` lines: start,
# cloned, agent_start and agent_end (the agent's own first and last timestamps), pushed.
# Usage: job.sh URL BRANCH NEW_BRANCH DIR AGENT [TOKEN]
set -eu
url=$1 branch=$2 new=$3 dir=$4 agent=$5 token=${6:-}
echo "start=$(date +%s.%N)"
# The token only in this process's environment, through an askpass helper (never argv).
export GIT_TERMINAL_PROMPT=0 GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
if [ -n "$token" ]; then
  export GIT_ASKPASS="$(dirname "$0")/askpass.sh" BENCH_GIT_TOKEN="$token"
fi
git -c credential.helper= clone -q --depth 1 --single-branch --branch "$branch" "$url" "$dir"
cd "$dir"
git checkout -q -b "$new"
git config user.name bench && git config user.email bench@example.invalid
echo "cloned=$(date +%s.%N)"
echo "bench: followups=0" | "$agent" >/dev/null
sed -n -e 's/.*"bench-start \([0-9.]*\)".*/agent_start=\1/p' \
  -e 's/.*"bench-end \([0-9.]*\)".*/agent_end=\1/p' .cat-follow-ups.jsonl
rm -f .cat-follow-ups.jsonl
git add -A
git commit -q -m "Agent's uncommitted edits"
git -c credential.helper= push -q origin "HEAD:refs/heads/$new"
echo "pushed=$(date +%s.%N)"
