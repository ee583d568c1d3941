#!/bin/sh
# The benchmark's fake agent, run by the worker (as its `pi`) and by the git-CLI script alike:
# the demo agent's edits without its pauses (write a file and commit it, edit README.md and
# leave it uncommitted), Pi's JSON event stream on stdout. Its first action records the time it
# started as a follow-up (`bench-start <epoch>`), which reaches the benchmark on the queue from
# the worker and in the checkout from the script; its last, `bench-end <epoch>`, the time its
# edits were done. A prompt containing `followups=N` also files N
# follow-ups 20 ms apart, each carrying the time it was written.
set -eu
t0=$(date +%s.%N)
printf '{"kind":"follow_up","title":"bench-start %s"}\n' "$t0" >>.cat-follow-ups.jsonl
PROMPT=$(cat)
echo '{"type":"agent_start"}'
n=$(printf '%s' "$PROMPT" | sed -n 's/.*followups=\([0-9]*\).*/\1/p' | head -n 1)
i=0
while [ "$i" -lt "${n:-0}" ]; do
  i=$((i + 1))
  printf '{"kind":"follow_up","title":"bench-fu %s %s"}\n' "$i" "$(date +%s.%N)" >>.cat-follow-ups.jsonl
  sleep 0.02
done
echo "hello from the benchmark agent" >bench-hello.txt
git add bench-hello.txt
git commit -q -m "Add bench-hello.txt"
echo '{"type":"tool_execution_end","toolName":"bash","isError":false}'
echo "status: DONE" >>README.md
echo '{"type":"tool_execution_end","toolName":"edit","isError":false}'
printf '{"kind":"follow_up","title":"bench-end %s"}\n' "$(date +%s.%N)" >>.cat-follow-ups.jsonl
printf '{"type":"agent_end","messages":[{"role":"user","content":[{"type":"text","text":"task"}]},{"role":"assistant","content":[{"type":"toolCall","name":"bash"},{"type":"text","text":"done"}],"stopReason":"stop","usage":{"input":10,"output":5,"cacheRead":0,"cacheWrite":0}}],"stopReason":"stop"}\n'
