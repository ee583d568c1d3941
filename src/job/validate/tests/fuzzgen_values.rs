//! What goes into the generated trees: the fields the parser reads, by the object that holds
//! them, and the hostile values (strings, numbers, nesting) put in their place.

use super::Node;

/// Every top-level field of a job body the validator reads.
pub const JOB_FIELDS: [&str; 32] = [
    "kind",
    "jobId",
    "mode",
    "systemPrompt",
    "userPrompt",
    "model",
    "harness",
    "proxyBaseUrl",
    "sessionToken",
    "subscriptionToken",
    "subscriptionBaseUrl",
    "ambientAuth",
    "ghToken",
    "repo",
    "branch",
    "githubApiBase",
    "webToolsGuidance",
    "webSearch",
    "full",
    "mergeBase",
    "bootstrap",
    "output",
    "contextFiles",
    "infra",
    "newBranch",
    "pushBranch",
    "commitMessage",
    "pr",
    "noChangesIsError",
    "persistentCheckout",
    "streamFollowUps",
    "guardLimits",
];

/// The fields the parser reads, by the key of the object that holds them.
pub(super) fn known_fields(context: &[u8]) -> &'static [&'static str] {
    match context {
        b"repo" => &[
            "owner",
            "name",
            "baseBranch",
            "cloneUrl",
            "provider",
            "serviceDirectory",
        ],
        b"pr" => &["title", "body"],
        b"bootstrap" => &["target", "fromScratch"],
        b"target" => &["owner", "name", "cloneUrl", "defaultBranch"],
        b"output" => &["kind", "shapeHint", "repair", "failOnUnusableFinal"],
        b"contextFiles" => &["path", "title", "url", "content"],
        b"infra" => &[
            "kind",
            "packageManager",
            "install",
            "buildScript",
            "outputDir",
            "serveMode",
            "serveScript",
            "servePort",
            "envInjection",
            "env",
            "wiremockMappingsPath",
            "wiremockPort",
            "environment",
            "noInfraDependencies",
            "composePath",
            "environmentUrl",
        ],
        b"guardLimits" => &[
            "maxToolCallsWithoutEdit",
            "maxConsecutiveErrors",
            "maxConsecutiveWebCalls",
        ],
        b"env" => &[
            "PATH",
            "LD_PRELOAD",
            "NODE_OPTIONS",
            "npm_config_registry",
            "NPM_CONFIG_USERCONFIG",
            "GIT_DIR",
            "Git_Ssh_Command",
            "API_URL",
            "",
            "\0",
        ],
        _ => &JOB_FIELDS,
    }
}

/// Keys whose values the parser treats as URLs or paths.
pub(super) fn is_url_or_path_key(key: &[u8]) -> bool {
    matches!(
        key,
        b"cloneUrl"
            | b"githubApiBase"
            | b"proxyBaseUrl"
            | b"subscriptionBaseUrl"
            | b"serviceDirectory"
            | b"path"
            | b"url"
            | b"outputDir"
            | b"composePath"
            | b"environmentUrl"
            | b"wiremockMappingsPath"
    )
}

pub(super) fn is_number_key(key: &[u8]) -> bool {
    matches!(
        key,
        b"servePort"
            | b"wiremockPort"
            | b"maxToolCallsWithoutEdit"
            | b"maxConsecutiveErrors"
            | b"maxConsecutiveWebCalls"
    )
}

const EDGE_NUMBERS: [&str; 44] = [
    "0",
    "-0",
    "1",
    "-1",
    "0.5",
    "0.9999999999999999",
    "1.0",
    "1.5",
    "65535",
    "65535.99",
    "65536",
    "-65536",
    "4294967295",
    "4294967296",
    "9007199254740993",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "-9223372036854775809",
    "1e308",
    "1.7976931348623157e308",
    "1.7976931348623159e308",
    "1e309",
    "1e400",
    "-1e400",
    "5e-324",
    "2e-324",
    "1e-400",
    "0e0",
    "1E+2",
    "1e-2",
    "-0.0",
    "123456789012345678901234567890123456789",
    "1e99999999999999999999",
    "1e-99999999999999999999",
    // Not numbers: refused as not JSON.
    "01",
    "1.",
    ".5",
    "+1",
    "NaN",
    "Infinity",
    "-",
    "1e",
    "0x10",
];

const PATH_PIECES: [&str; 22] = [
    "..",
    ".",
    "/",
    "\\",
    "../../etc/passwd",
    "a/../..",
    "..\\..\\windows",
    "/abs/path",
    "a/./b//c/",
    ".hidden",
    "...",
    "packages/api",
    "requirements.md",
    "C:\\Windows",
    "\\\\?\\C:\\",
    "%2e%2e/",
    "%00",
    "~",
    "a\u{0}b",
    " ",
    "\t\n\r",
    "\u{FEFF}..",
];

const URL_PIECES: [&str; 40] = [
    "https://github.com/acme/widgets.git",
    "https://api.github.com",
    "https://GITHUB.COM/",
    "https://github.com./",
    "https://github.com:99999/",
    "https://github.com:443/",
    "https://user:pass@github.com/",
    "https://github.com@evil.example/",
    "https://evil.example#@github.com/",
    "https://evil.example\\@github.com/",
    "https://evil.example/",
    "https://[::1]/",
    "https://[::1/",
    "https://127.0.0.1/",
    "https://0x7f.1/",
    "https://999.999.999.999/",
    "http://github.com/",
    "HTTPS://github.com/",
    "file:///etc/passwd",
    "file://host/share",
    "file:",
    "ssh://git@github.com/acme/w.git",
    "git@github.com:acme/w.git",
    "javascript:alert(1)",
    "data:text/plain,x",
    "https:github.com",
    "https:/github.com",
    "//github.com",
    "https://",
    "https://ｇｉｔｈｕｂ．ｃｏｍ/",
    "https://git\u{AD}hub.com/",
    "https://xn--github-.com/",
    "https://xn--80ak6aa92e.com/",
    "https://gith\u{0}ub.com/",
    "https://github.com\u{0}.evil.example/",
    "https://%67ithub.com/",
    "https://github.com/%zz",
    "https://a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z/",
    "https://\u{202E}moc.buhtig/",
    "https://ex ample.com/",
];

const TEXT_PIECES: [&str; 32] = [
    "",
    "\u{0}",
    "🦀",
    "\u{202E}",
    "\u{FEFF}",
    "\u{200B}",
    "é",
    "e\u{301}",
    "İ",
    "ß",
    "\u{212A}",
    "\u{FFFD}",
    "\u{10FFFF}",
    "\u{7F}",
    "\u{85}",
    "\u{2028}",
    "agent",
    "explore",
    "coding",
    "preview",
    "github",
    "gitlab",
    "claude-code",
    "codex",
    "frontend",
    "structured",
    "local",
    "ephemeral",
    "pnpm",
    "static",
    "runtime",
    "\"\\",
];

/// Byte sequences that are not UTF-8: the parser must refuse them, not choke on them.
const INVALID_UTF8: [&[u8]; 8] = [
    &[0xFF],
    &[0xC3, 0x28],
    &[0xC0, 0xAF],
    &[0xED, 0xA0, 0x80],
    &[0xF4, 0x90, 0x80, 0x80],
    &[0xE2, 0x82],
    &[0x80],
    &[0xF8, 0x88, 0x80, 0x80, 0x80],
];

/// String bodies written as raw JSON text, for escapes the tree cannot express.
const RAW_STRINGS: [&str; 7] = [
    r#""\ud800""#,
    r#""a\udc00b""#,
    r#""\ud83e\udd80""#,
    r#""\ud83e""#,
    r#""\u0000\u001f\u007f""#,
    r#""\uD834\uDD1E/..""#,
    r#""\x41""#,
];

pub(super) fn pick<T: Copy>(rng: &mut fastrand::Rng, items: &[T]) -> T {
    items[rng.usize(..items.len())]
}

pub(super) fn edge_number(rng: &mut fastrand::Rng) -> Node {
    match rng.u8(..10) {
        0 => Node::Num("9".repeat(rng.usize(20..2000))),
        1 => Node::Num(format!("0.{}1", "0".repeat(rng.usize(10..2000)))),
        2 => Node::Num(format!("{}e{}", rng.i64(..), rng.i32(-400..=400))),
        3 => Node::Num(format!("{}", rng.f64() * 70000.0 - 1000.0)),
        _ => Node::Num(pick(rng, &EDGE_NUMBERS).to_string()),
    }
}

pub(super) fn hostile_string(rng: &mut fastrand::Rng) -> Node {
    if rng.u8(..10) == 0 {
        return Node::Raw(pick(rng, &RAW_STRINGS).as_bytes().to_vec());
    }
    let mut s = Vec::new();
    for _ in 0..rng.usize(1..=4) {
        // Invalid UTF-8 is kept rare: it stops the body at the JSON parser.
        match rng.u8(..40) {
            0..=11 => s.extend_from_slice(pick(rng, &PATH_PIECES).as_bytes()),
            12..=23 => s.extend_from_slice(pick(rng, &URL_PIECES).as_bytes()),
            24..=31 => s.extend_from_slice(pick(rng, &TEXT_PIECES).as_bytes()),
            32 => s.extend_from_slice(pick(rng, &INVALID_UTF8)),
            33 => (0..rng.usize(1..=4)).for_each(|_| s.push(rng.u8(..))),
            34..=35 => {
                for c in (0..rng.usize(1..=4)).filter_map(|_| char::from_u32(rng.u32(..0x11_0000)))
                {
                    s.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                }
            }
            _ => (0..rng.usize(1..=8)).for_each(|_| s.push(rng.u8(b' '..=b'~'))),
        }
    }
    Node::Str(s)
}

pub(super) fn huge_string(rng: &mut fastrand::Rng) -> Node {
    let len = match rng.u8(..10) {
        0..=5 => rng.usize(64 << 10..1 << 20),
        6..=8 => rng.usize(1 << 20..4 << 20),
        _ => rng.usize(4 << 20..6 << 20),
    };
    let unit: &[u8] = pick(
        rng,
        &[
            b"x".as_slice(),
            "é".as_bytes(),
            "🦀".as_bytes(),
            b"\0",
            b"\\",
            b"\"",
            b"/..",
            b"a/",
        ],
    );
    Node::Str(unit.repeat(len / unit.len()))
}

pub(super) fn deep_nesting(rng: &mut fastrand::Rng) -> Node {
    let depth = pick(rng, &[64, 126, 127, 128, 129, 200, 1000, 100_000]);
    let (open, close): (&[u8], &[u8]) = match rng.u8(..3) {
        0 => (b"[", b"]"),
        1 => (b"{\"a\":", b"}"),
        _ => (b"{\"repo\":[", b"]}"),
    };
    let mut raw = open.repeat(depth);
    raw.extend_from_slice(b"1");
    // One in four stays unclosed.
    if rng.u8(..4) != 0 {
        raw.extend_from_slice(&close.repeat(depth));
    }
    Node::Raw(raw)
}

/// A value for `key` that the parser could accept, so mutations reach past the first check.
pub(super) fn plausible(rng: &mut fastrand::Rng, key: &[u8]) -> Node {
    let s = |v: &str| Node::Str(v.as_bytes().to_vec());
    match key {
        b"kind" => s(pick(
            rng,
            &["agent", "frontend", "structured", "service", "Agent"],
        )),
        b"mode" => s(pick(rng, &["explore", "coding", "preview", "Coding"])),
        b"harness" => s(pick(rng, &["claude-code", "codex", "pi", ""])),
        b"provider" => match rng.u8(..4) {
            0 => Node::Null,
            _ => s(pick(rng, &["github", "gitlab", "GitHub", "bitbucket"])),
        },
        b"environment" => s(pick(rng, &["local", "ephemeral", "prod"])),
        b"packageManager" => s(pick(rng, &["pnpm", "npm", "yarn", "bun"])),
        b"serveMode" => s(pick(rng, &["static", "command", "dynamic"])),
        b"envInjection" => s(pick(rng, &["build", "runtime", "both"])),
        b"ambientAuth"
        | b"webSearch"
        | b"full"
        | b"fromScratch"
        | b"repair"
        | b"failOnUnusableFinal"
        | b"noChangesIsError"
        | b"persistentCheckout"
        | b"streamFollowUps"
        | b"noInfraDependencies" => Node::Bool(rng.bool()),
        k if is_number_key(k) => edge_number(rng),
        k if is_url_or_path_key(k) => hostile_string(rng),
        b"env" => Node::Obj(
            (0..rng.usize(1..=4))
                .map(|_| {
                    let name = pick(rng, known_fields(b"env")).as_bytes().to_vec();
                    (name, s("v"))
                })
                .collect(),
        ),
        b"contextFiles" => Node::Arr(
            (0..rng.usize(0..=3))
                .map(|_| {
                    Node::Obj(vec![
                        (b"path".to_vec(), hostile_string(rng)),
                        (b"content".to_vec(), s("c")),
                    ])
                })
                .collect(),
        ),
        // At and past the bound on `jobId` (200 bytes), in bytes and in characters.
        b"jobId" => {
            let ids = [
                "job-x".to_owned(),
                "j".repeat(200),
                "j".repeat(201),
                "é".repeat(100),
                "é".repeat(101),
                "x".repeat(300),
            ];
            s(&ids[rng.usize(..ids.len())])
        }
        b"infra" | b"guardLimits" | b"pr" | b"bootstrap" | b"target" | b"output" | b"repo" => {
            let mut members = Vec::new();
            for f in known_fields(key) {
                if rng.u8(..3) != 0 {
                    members.push((f.as_bytes().to_vec(), plausible(rng, f.as_bytes())));
                }
            }
            Node::Obj(members)
        }
        _ => s(pick(
            rng,
            &["job-x", "main", "t", " ", "x".repeat(300).as_str()],
        )),
    }
}

pub(super) fn random_value(rng: &mut fastrand::Rng, depth: usize) -> Node {
    let nested = depth < 3;
    match rng.u8(..20) {
        0..=1 => Node::Null,
        2..=3 => Node::Bool(rng.bool()),
        4..=6 => edge_number(rng),
        7..=10 => hostile_string(rng),
        11 => Node::Str(Vec::new()),
        12 => Node::Arr(Vec::new()),
        13 => Node::Obj(Vec::new()),
        14..=15 if nested => Node::Arr(
            (0..rng.usize(1..=4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        16..=17 if nested => Node::Obj(
            (0..rng.usize(1..=4))
                .map(|_| {
                    let key = pick(rng, known_fields(b"")).as_bytes().to_vec();
                    (key, random_value(rng, depth + 1))
                })
                .collect(),
        ),
        18 if rng.u8(..10) == 0 => deep_nesting(rng),
        _ => Node::Str(pick(rng, &TEXT_PIECES).as_bytes().to_vec()),
    }
}

pub(super) fn random_key(rng: &mut fastrand::Rng) -> Vec<u8> {
    let len = rng.usize(0..=6);
    if rng.u8(..10) == 0 {
        return (0..len).map(|_| rng.u8(..)).collect();
    }
    (0..len)
        .filter_map(|_| char::from_u32(rng.u32(..0x3000)))
        .collect::<String>()
        .into_bytes()
}

pub(super) fn near_miss_key(rng: &mut fastrand::Rng, key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    match rng.u8(..9) {
        0 => k.make_ascii_uppercase(),
        1 => k.make_ascii_lowercase(),
        2 => k.insert(0, b' '),
        3 => k.push(b'\0'),
        4 => k.clear(),
        5 => k.extend_from_slice("\u{200B}".as_bytes()),
        6 => {
            // A Cyrillic 'о' for the first 'o', or a dotted 'İ' for an 'I'.
            if let Some(i) = k.iter().position(|&b| b == b'o' || b == b'I') {
                let with: &[u8] = if k[i] == b'o' {
                    "о".as_bytes()
                } else {
                    "İ".as_bytes()
                };
                k.splice(i..=i, with.iter().copied());
            }
        }
        7 => k.extend_from_slice(&[0xFF]),
        _ => {
            if let Some(b) = k.first_mut() {
                b.make_ascii_uppercase();
            }
        }
    }
    k
}
