//! A job's tool servers and skills reach the real Claude Code (seed-later 10): the worker runs
//! `claude` (`CLAUDE_BIN`, see `real_subscription`) offline against the model mock, with a job
//! carrying two MCP servers (a working stdio server and one whose command does not exist) and a
//! skill with a resource. What the CLI did with them is read from what it sent the model, from
//! the server itself, and from the `toolServers` it reported.

use std::path::Path;

use serde_json::{json, Value};

use crate::real_subscription::{
    agent_argv, ancestry_command, assert_pushed, bin, probe_dir, worker_job, FINAL_TEXT,
    WRITE_AND_COMMIT,
};
use crate::support::model_mock::{Api, ModelMock, Step};
use crate::support::repo::BareRepo;
use crate::support::worker::{drain_json, TestWorker};

const SERVER_SECRET: &str = "mcp-demo-secret-7f3a91c2";
const SKILL_DESCRIPTION: &str = "Write release notes in the house style";

/// A minimal MCP server over stdio (newline-delimited JSON-RPC): one tool, `echo`. It writes
/// the secret it was given to `seen`, so the test knows its environment reached it.
const SERVER: &str = r#"
const fs = require('fs');
fs.writeFileSync(process.argv[2], process.env.DEMO_TOKEN || '');
let buf = '';
const send = (m) => process.stdout.write(JSON.stringify(m) + '\n');
process.stdin.on('data', (chunk) => {
  buf += chunk;
  let nl;
  while ((nl = buf.indexOf('\n')) >= 0) {
    const line = buf.slice(0, nl); buf = buf.slice(nl + 1);
    if (!line.trim()) continue;
    const msg = JSON.parse(line);
    if (msg.id === undefined) continue;
    if (msg.method === 'initialize') {
      send({jsonrpc: '2.0', id: msg.id, result: {protocolVersion: msg.params.protocolVersion,
        capabilities: {tools: {}}, serverInfo: {name: 'demo', version: '1.0.0'}}});
    } else if (msg.method === 'tools/list') {
      send({jsonrpc: '2.0', id: msg.id, result: {tools: [{name: 'echo',
        description: 'Echo the text back', inputSchema: {type: 'object', properties: {text: {type: 'string'}}}}]}});
    } else {
      send({jsonrpc: '2.0', id: msg.id, error: {code: -32601, message: 'not supported'}});
    }
  }
});
"#;

/// Every message the job published, as one text: its result and its progress.
async fn everything_published(w: &TestWorker, result: &Value) -> String {
    let progress = drain_json(w.conn(), &w.broker.topo.progress_queue).await;
    format!("{result}\n{}", serde_json::to_string(&progress).unwrap())
}

#[cfg_attr(
    not(has_claude),
    ignore = "needs CLAUDE_BIN: scripts/install-agent-clis.sh"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claude_code_job_gets_its_mcp_servers_and_skills_and_reports_the_servers_state() {
    let Some(claude_bin) = bin("CLAUDE_BIN") else {
        eprintln!("tools: skipped (set CLAUDE_BIN, see scripts/install-agent-clis.sh)");
        return;
    };
    let origin = BareRepo::new();
    let probe = probe_dir();
    let (ancestry, seen) = (
        probe.path().join("ancestry"),
        probe.path().join("server-env"),
    );
    let server = probe.path().join("demo-server.js");
    std::fs::write(&server, SERVER).unwrap();
    let steps = vec![
        Step::tool_call(
            "Bash",
            json!({"command": ancestry_command(&ancestry), "description": "List the processes"}),
        ),
        Step::tool_call(
            "Bash",
            json!({"command": WRITE_AND_COMMIT, "description": "Write hello.txt and commit it"}),
        ),
        Step::text(FINAL_TEXT),
    ];
    let mock = ModelMock::start(steps).await;
    let w = TestWorker::start(Path::new("pi-unused"), |c| {
        c.agent.claude_command = vec![claude_bin.display().to_string()];
        // This worker runs Claude Code jobs only: Pi need not be installed.
        c.agent.required_commands = vec!["claude".into()];
        c.sandbox.writable.push(probe.path().display().to_string());
    })
    .await;
    let mut job = worker_job(
        "job-claude-tools",
        &origin,
        "claude-code",
        &mock.origin(),
        "work/claude-tools",
    );
    job["mcpServers"] = json!([
        {"id": "demo", "command": "node",
         "args": [server.display().to_string(), seen.display().to_string()],
         "env": {"DEMO_TOKEN": SERVER_SECRET}, "secretKeys": ["DEMO_TOKEN"]},
        {"id": "broken", "command": "/nonexistent/mcp-server"}
    ]);
    job["skills"] = json!([{
        "name": "release-notes",
        "description": SKILL_DESCRIPTION,
        "instructions": "Group the changes by area.",
        "resources": [{"relPath": "template.md", "content": "## Changes\n"}]
    }]);
    w.enqueue(&job).await;
    let result = w.next_result(crate::real_pi::WORKER_WAIT).await;

    assert_pushed(&result, &origin, "work/claude-tools");
    // The CLI connected the working server and says which one failed (in its own order).
    let mut servers = result["result"]["toolServers"].as_array().unwrap().clone();
    servers.sort_by_key(|s| s["id"].as_str().unwrap().to_owned());
    assert_eq!(
        servers,
        [
            json!({"id": "broken", "status": "failed", "toolCount": 0}),
            json!({"id": "demo", "status": "ready", "toolCount": 1})
        ],
        "{result}"
    );
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap(),
        SERVER_SECRET,
        "the server got its environment"
    );
    // The model was offered the server's tool and the skill.
    let first = mock.api_requests(Api::Messages)[0].body.to_string();
    assert!(
        first.contains("mcp__demo__echo"),
        "no MCP tool offered: {first}"
    );
    assert!(
        first.contains(SKILL_DESCRIPTION),
        "no skill offered: {first}"
    );
    // Only the job's servers, from a file: no secret on any command line.
    let argv = agent_argv(&ancestry, "--strict-mcp-config");
    assert!(argv.contains("--mcp-config "), "{argv}");
    let lines = std::fs::read_to_string(&ancestry).unwrap();
    assert!(!lines.contains(SERVER_SECRET), "{lines}");
    // Published as it arrived, and the server's secret in nothing published.
    let published = everything_published(&w, &result).await;
    assert!(published.contains("\"toolServers\""), "{published}");
    assert!(!published.contains(SERVER_SECRET), "{published}");
    w.stop().await;
}
