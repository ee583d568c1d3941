//! Hostile bodies: parse_job refuses or accepts them, and never panics.

use serde_json::{json, Value};

use super::*;

/// Every value type, and then some, for every field the parser reads.
fn nasty_values() -> Vec<Value> {
    vec![
        Value::Null,
        json!(true),
        json!(false),
        json!(0),
        json!(-1),
        json!(0.5),
        json!(-0.0),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(f64::MAX),
        json!(5e-324),
        json!(""),
        json!(" "),
        json!(".."),
        json!("../../.."),
        json!("\u{0}"),
        json!("a\u{0}b/../c"),
        json!("🦀/é/\u{202E}txt.exe"),
        json!("\\\\?\\C:\\Windows"),
        json!("https://evil.example"),
        json!("file:///etc/passwd"),
        json!([]),
        json!([null, 1, "x", {}]),
        json!({}),
        json!({"a": {"b": [1, 2, {"c": null}]}}),
    ]
}

#[test]
fn wrong_types_in_every_field_never_panic() {
    let full = with(
        "coding",
        json!({
            "harness": "claude-code", "subscriptionToken": "s", "ambientAuth": false,
            "pr": {"title": "t", "body": "b"},
            "bootstrap": {"target": {"owner": "o", "name": "n",
                "cloneUrl": "https://github.com/o/n.git", "defaultBranch": "main"},
                "fromScratch": true},
            "output": {"kind": "structured", "shapeHint": "h", "repair": true,
                "failOnUnusableFinal": true},
            "contextFiles": [{"path": "a.md", "title": "t", "url": "u", "content": "c"}],
            "infra": {"kind": "frontend", "packageManager": "npm", "install": "i",
                "buildScript": "b", "outputDir": "d", "serveMode": "static",
                "serveScript": "s", "servePort": 1, "envInjection": "build",
                "env": {"A": "1"}, "wiremockMappingsPath": "m", "wiremockPort": 2,
                "environment": "local", "noInfraDependencies": true, "composePath": "c",
                "environmentUrl": "e"},
            "guardLimits": {"maxToolCallsWithoutEdit": 1, "maxConsecutiveErrors": 2,
                "maxConsecutiveWebCalls": 3},
            "repo": {"owner": "acme", "name": "widgets", "baseBranch": "main",
                "cloneUrl": "https://github.com/acme/widgets.git", "provider": "github",
                "serviceDirectory": "svc"}
        }),
    );
    assert!(parse(&full).is_ok());
    // Every path to a leaf or object of the full job, each replaced by every nasty value.
    fn paths(v: &Value, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
        if let Value::Object(o) = v {
            for (k, child) in o {
                let mut p = prefix.clone();
                p.push(k.clone());
                out.push(p.clone());
                paths(child, p, out);
            }
        }
        if let Some(first) = v.as_array().and_then(|a| a.first()) {
            let mut p = prefix.clone();
            p.push("0".into());
            paths(first, p, out);
        }
    }
    let mut all = Vec::new();
    paths(&full, Vec::new(), &mut all);
    all.extend(
        super::fuzzgen::JOB_FIELDS
            .iter()
            .chain(&["unknownField"])
            .map(|f| vec![f.to_string()]),
    );
    let mut refused = 0;
    for path in &all {
        let pointer = format!("/{}", path.join("/"));
        for nasty in nasty_values() {
            let mut job = full.clone();
            match job.pointer_mut(&pointer) {
                Some(slot) => *slot = nasty,
                None => job[path[0].as_str()] = nasty,
            }
            if let Err(e) = parse(&job) {
                refused += 1;
                assert!(e.message.starts_with("Invalid job: "), "{}", e.message);
                assert!(!e.message.contains("ght"), "{}", e.message);
            }
        }
    }
    // Guards against a corpus that silently stopped reaching the validator.
    assert!(refused > 100, "only {refused} refusals");
}

fn never_panics(body: &[u8]) -> Result<AgentJob, InvalidJob> {
    let outcome = parse_job(body, &policy());
    if let Err(e) = &outcome {
        assert!(e.message.starts_with("Invalid job: "), "{}", e.message);
    }
    outcome
}

#[test]
fn deep_nesting_is_refused_by_the_json_recursion_limit() {
    let deep_arrays = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_objects = format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
    let base_text = serde_json::to_string(&base("coding")).unwrap();
    let deep_in_field = base_text.replacen(
        "\"branch\":\"main\"",
        &format!("\"branch\":\"main\",\"unknownField\":{deep_arrays}"),
        1,
    );
    let unclosed = "[".repeat(100_000);
    for body in [deep_arrays, deep_objects, deep_in_field, unclosed] {
        let err = never_panics(body.as_bytes()).unwrap_err();
        assert!(
            err.message
                .starts_with("Invalid job: body is not valid JSON (recursion limit exceeded"),
            "{}",
            err.message
        );
        assert_eq!(err.job_id, None);
    }
}

#[test]
fn multi_megabyte_strings_are_handled() {
    let huge = "x".repeat(3 * 1024 * 1024);
    let mut job = base("coding");
    job["userPrompt"] = json!(huge);
    let parsed = never_panics(&serde_json::to_vec(&job).unwrap()).unwrap();
    assert_eq!(parsed.user_prompt.len(), huge.len());

    let mut job = base("coding");
    job["repo"]["serviceDirectory"] = json!("a/".repeat(256 * 1024));
    job["contextFiles"] = json!([{"path": huge, "content": "c"}]);
    let parsed = never_panics(&serde_json::to_vec(&job).unwrap()).unwrap();
    assert_eq!(
        parsed.repo.service_directory.map(|d| d.len()),
        Some(512 * 1024 - 1)
    );
    assert_eq!(parsed.context_files[0].path.len(), huge.len());

    let mut job = base("coding");
    job["repo"]["cloneUrl"] = json!(format!("https://github.com/{}", &huge[..512 * 1024]));
    job["mode"] = json!(huge);
    let err = never_panics(&serde_json::to_vec(&job).unwrap()).unwrap_err();
    assert_eq!(err.message, MODE_REFUSAL);
}

#[test]
fn unicode_and_nul_bytes_in_paths_are_kept_or_dropped_by_the_rules() {
    let mut job = base("explore");
    job["repo"]["serviceDirectory"] = json!("\u{0}/🦀\u{FEFF}/é/\u{202E}/\u{0}..");
    job["contextFiles"] = json!([
        {"path": "\u{0}..\u{0}/\u{FEFF}é.md", "content": "dotfile once filtered"},
        {"path": "🦀r\u{0}e\u{202E}a\u{0}d.md", "content": "c"}
    ]);
    job["infra"] = json!({"kind": "frontend", "env": {"\u{0}": "\u{0}", "É": "x"}});
    let parsed = never_panics(&serde_json::to_vec(&job).unwrap()).unwrap();
    // The seed only refuses `..` segments; a NUL makes the later mkdir fail, not the parse.
    assert_eq!(
        parsed.repo.service_directory.as_deref(),
        Some("\u{0}/🦀\u{FEFF}/é/\u{202E}/\u{0}..")
    );
    let names: Vec<&str> = parsed
        .context_files
        .iter()
        .map(|f| f.path.as_str())
        .collect();
    assert_eq!(names, ["read.md"]);
    assert_eq!(
        frontend(&parsed).env,
        Some(vec![
            ("\u{0}".to_string(), "\u{0}".to_string()),
            ("É".to_string(), "x".to_string())
        ])
    );
    let mut job = base("coding");
    job["repo"]["serviceDirectory"] = json!("a/\u{0}../..");
    assert_eq!(
        never_panics(&serde_json::to_vec(&job).unwrap())
            .unwrap_err()
            .message,
        "Invalid job: 'repo.serviceDirectory' must be a path inside the repo"
    );
}

#[test]
fn malformed_bytes_are_refused_as_not_json() {
    let bodies: [&[u8]; 12] = [
        b"",
        b" ",
        b"\0",
        b"\xEF\xBB\xBF{}",
        b"{\"jobId\":\"\xFF\xFE\"}",
        b"{\"jobId\":\"job\",\"mode\":\"\xC3\x28\"}",
        b"\xFF\xFF\xFF\xFF",
        b"{\"jobId\":\"\\ud800\"}",
        b"{\"guardLimits\":{\"maxConsecutiveErrors\":1e400}}",
        b"{\"guardLimits\":{\"maxConsecutiveErrors\":-1e400}}",
        b"{} {}",
        b"{\"jobId\":\"j\"",
    ];
    for body in bodies {
        let err = never_panics(body).unwrap_err();
        assert!(
            err.message
                .starts_with("Invalid job: body is not valid JSON ("),
            "{body:?}: {}",
            err.message
        );
        assert_eq!(err.job_id, None);
    }
    assert_eq!(
        never_panics(b"").unwrap_err().message,
        "Invalid job: body is not valid JSON (EOF while parsing a value at line 1 column 0)"
    );
}

#[test]
fn odd_but_valid_json_is_read_like_the_seed_reads_it() {
    // Duplicate keys: the last one wins, as with JSON.parse.
    let body = serde_json::to_string(&base("coding")).unwrap().replacen(
        '{',
        "{\"mode\":\"nonsense\",\"jobId\":\"\",",
        1,
    );
    assert_eq!(never_panics(body.as_bytes()).unwrap().job_id, "job_123");
    // An escaped NUL is just a character of the id.
    let err = never_panics(b"{\"jobId\":\"a\\u0000b\",\"mode\":\"coding\"}").unwrap_err();
    assert_eq!(err.job_id.as_deref(), Some("a\u{0}b"));
}

#[test]
fn numbers_out_of_range_never_panic() {
    let base_text = serde_json::to_string(&with(
        "coding",
        json!({"guardLimits": {"maxToolCallsWithoutEdit": 0},
            "infra": {"kind": "frontend", "servePort": 0}}),
    ))
    .unwrap();
    for n in [
        "1e308",
        "-1e308",
        "18446744073709551615",
        "18446744073709551616",
        "184467440737095516160000",
        "-9223372036854775809",
        "0.0000000000000000000000000001",
        "1e-400",
        "-0",
    ] {
        // In string positions, where a number is the wrong type ...
        let in_strings = base_text
            .replacen("\"job_123\"", n, 1)
            .replace("\"main\"", n);
        let err = never_panics(in_strings.as_bytes()).unwrap_err();
        assert_eq!(err.message, nes_refusal("jobId"), "{n}");
        // ... and in number positions, where it is floored or dropped.
        let in_numbers = base_text
            .replace(
                "\"maxToolCallsWithoutEdit\":0",
                &format!("\"maxToolCallsWithoutEdit\":{n}"),
            )
            .replace("\"servePort\":0", &format!("\"servePort\":{n}"));
        let job = never_panics(in_numbers.as_bytes()).unwrap();
        assert_eq!(frontend(&job).serve_port, None, "{n}");
    }
}

// The classes below were found by the `fuzz_job` generator (see `fuzzgen`) and are pinned
// here one by one.

#[test]
fn every_truncation_of_a_valid_fixture_is_refused_as_not_json() {
    let fixtures = super::fuzzgen::load_valid_fixtures(&super::fuzzgen::fixtures_dir()).unwrap();
    assert!(fixtures.len() >= 7, "{} fixtures", fixtures.len());
    for (name, body) in &fixtures {
        // Up to the closing brace: a cut after it only drops trailing whitespace.
        let end = body.iter().rposition(|&b| b == b'}').unwrap();
        for cut in 0..end {
            let err = never_panics(&body[..cut]).unwrap_err();
            assert!(
                err.message
                    .starts_with("Invalid job: body is not valid JSON ("),
                "{name} cut at {cut}: {}",
                err.message
            );
            assert_eq!(err.job_id, None, "{name} cut at {cut}");
        }
        assert!(never_panics(&body[..=end]).is_ok(), "{name}");
    }
}

#[test]
fn nesting_is_accepted_up_to_the_json_recursion_limit_and_refused_past_it() {
    let base_text = serde_json::to_string(&base("coding")).unwrap();
    let nested = |depth: usize| {
        let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        base_text.replacen(
            "\"branch\":\"main\"",
            &format!("\"branch\":\"main\",\"unknownField\":{deep}"),
            1,
        )
    };
    // serde_json allows 127 levels, and the body's own object is one of them.
    assert!(never_panics(nested(126).as_bytes()).is_ok());
    let err = never_panics(nested(127).as_bytes()).unwrap_err();
    assert!(
        err.message
            .starts_with("Invalid job: body is not valid JSON (recursion limit exceeded"),
        "{}",
        err.message
    );
}

#[test]
fn near_miss_keys_are_unknown_fields() {
    for key in [
        "JobId",
        "jobid",
        " jobId",
        "jobId ",
        "jobId\u{0}",
        "jobId\u{200B}",
        "j\u{43E}bId",
        "",
    ] {
        let mut job = base("coding");
        let id = job.as_object_mut().unwrap().remove("jobId").unwrap();
        job[key] = id;
        let err = never_panics(&serde_json::to_vec(&job).unwrap()).unwrap_err();
        assert_eq!(err.message, nes_refusal("jobId"), "{key:?}");
        assert_eq!(err.job_id, None, "{key:?}");
    }
    let mut job = base("coding");
    let url = job["repo"]
        .as_object_mut()
        .unwrap()
        .remove("cloneUrl")
        .unwrap();
    job["repo"]["cloneURL"] = url;
    assert_eq!(refusal(&job), nes_refusal("repo.cloneUrl"));
}

#[test]
fn a_duplicated_nested_clone_url_is_checked_as_it_is_read() {
    let body = |first: &str, second: &str| {
        serde_json::to_string(&base("coding")).unwrap().replacen(
            "\"cloneUrl\":\"https://github.com/acme/widgets.git\"",
            &format!("\"cloneUrl\":\"{first}\",\"cloneUrl\":\"{second}\""),
            1,
        )
    };
    // The last one wins, for the host check and for the clone alike.
    let job =
        never_panics(body("https://evil.example/x.git", "https://github.com/a/b.git").as_bytes())
            .unwrap();
    assert_eq!(job.repo.clone_url, "https://github.com/a/b.git");
    let err =
        never_panics(body("https://github.com/a/b.git", "https://evil.example/x.git").as_bytes())
            .unwrap_err();
    assert_eq!(
        err.message,
        "Invalid job: 'repo.cloneUrl' host 'evil.example' is not an allowed GitHub host"
    );
}

/// JSON text with every character of every key and string as a `\uXXXX` escape.
fn escaped_everywhere(v: &Value) -> String {
    fn string(s: &str) -> String {
        let mut out = String::from("\"");
        for unit in s.encode_utf16() {
            out.push_str(&format!("\\u{unit:04X}"));
        }
        out.push('"');
        out
    }
    match v {
        Value::String(s) => string(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(escaped_everywhere).collect();
            format!("[{}]", items.join(","))
        }
        Value::Object(members) => {
            let members: Vec<String> = members
                .iter()
                .map(|(k, v)| format!("{}:{}", string(k), escaped_everywhere(v)))
                .collect();
            format!("{{{}}}", members.join(","))
        }
        other => other.to_string(),
    }
}

#[test]
fn a_fixture_written_with_every_character_escaped_parses_to_the_same_job() {
    let fixtures = super::fuzzgen::load_valid_fixtures(&super::fuzzgen::fixtures_dir()).unwrap();
    for (name, body) in &fixtures {
        let value: Value = serde_json::from_slice(body).unwrap();
        let escaped = escaped_everywhere(&value);
        assert!(
            escaped.contains("\\u006A\\u006F\\u0062\\u0049\\u0064"),
            "{name}"
        );
        assert_eq!(
            never_panics(escaped.as_bytes()).unwrap(),
            never_panics(body).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn hosts_that_url_parsing_maps_onto_an_allowed_host_are_allowed() {
    // WHATWG URL parsing (the seed's `new URL`) maps these to `github.com`, and the clone uses
    // the parsed form too, so the token goes where the check looked.
    for url in [
        "https://ｇｉｔｈｕｂ．ｃｏｍ/a/b.git",
        "https://git\u{AD}hub.com/a/b.git",
        "https://%67ithub.com/a/b.git",
        "https://GITHUB.COM/a/b.git",
    ] {
        let mut job = base("coding");
        job["repo"]["cloneUrl"] = json!(url);
        assert!(
            never_panics(&serde_json::to_vec(&job).unwrap()).is_ok(),
            "{url}"
        );
    }
    // A trailing dot is another host name, and an unmappable host is no URL at all.
    for (url, refusal_text) in [
        (
            "https://github.com./a/b.git",
            "Invalid job: 'repo.cloneUrl' host 'github.com.' is not an allowed GitHub host",
        ),
        (
            "https://github.com\u{0}.evil.example/",
            "Invalid job: 'repo.cloneUrl' must be a valid URL",
        ),
        (
            "https://\u{202E}moc.buhtig/",
            "Invalid job: 'repo.cloneUrl' must be a valid URL",
        ),
    ] {
        let mut job = base("coding");
        job["repo"]["cloneUrl"] = json!(url);
        assert_eq!(refusal(&job), refusal_text, "{url}");
    }
}
