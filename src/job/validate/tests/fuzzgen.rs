//! A structure-aware generator of hostile job bodies and the checks every outcome must pass,
//! shared by the `fuzz_job` example (a million inputs, run by hand) and the
//! `generated_bodies_are_accepted_or_refused_and_never_panic` test (a fixed sample, in CI).
//!
//! It uses nothing of the crate (only `serde_json`, `fastrand` and std), so the example can
//! include this file with `#[path]` and no feature or extra crate is needed.
//!
//! Each input is a valid job fixture, read into a tree that can hold what the parser must
//! survive (duplicate keys, numbers beyond `f64`, invalid UTF-8, raw text), mutated one to six
//! times at any depth, written out in a random layout and escaping style, and then, for one
//! input in six, damaged byte-wise. Input `i` of seed `s` depends on `(s, i)` only, so
//! any input can be regenerated alone. The values put into the trees are in
//! `fuzzgen_values.rs`, the checks in `fuzzgen_checks.rs`.

use std::path::{Path, PathBuf};

use serde_json::Value;

#[path = "fuzzgen_checks.rs"]
mod checks;
#[path = "fuzzgen_values.rs"]
mod values;

pub use checks::{check, Outcome, REFUSAL_CLASSES};
// Used by the unit tests, not by the example that includes this file too.
#[allow(unused_imports)]
pub use values::JOB_FIELDS;
use values::{
    deep_nesting, edge_number, hostile_string, huge_string, is_number_key, is_url_or_path_key,
    known_fields, near_miss_key, pick, plausible, random_key, random_value,
};

/// The job fixtures, relative to the crate.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jobs")
}

/// The valid fixtures of `dir` (every `*.json` not named `invalid-*`), in name order.
pub fn load_valid_fixtures(dir: &Path) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") && !name.starts_with("invalid-") {
            names.push(name);
        }
    }
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let body = std::fs::read(dir.join(&name))?;
            Ok((name, body))
        })
        .collect()
}

/// What the generator does to an input; an input records every kind applied to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutation {
    /// A node at any depth (the root included) replaced by a random value of any type.
    TypeSwap,
    /// A member or element removed.
    Delete,
    /// A known field (for the object it lands in) or a random key added, with a plausible or a
    /// random value.
    Insert,
    /// A member written twice, the copies with different or equal values.
    DuplicateKey,
    /// A key changed to a near miss (case, spaces, NUL, look-alikes, empty).
    RenameKey,
    /// A string (mostly paths and URLs) replaced by traversal, URL tricks, unicode, NUL,
    /// invalid UTF-8 or lone surrogate escapes.
    HostileText,
    /// A number at the edges of u16/u64/i64/f64, beyond them, or not a number at all.
    EdgeNumber,
    /// Arrays or objects nested around the parser's recursion limit and far beyond, closed
    /// or not.
    DeepNesting,
    /// A string of 64 KiB to 6 MiB, sometimes over the body limit.
    HugeString,
    /// Single bits flipped or bytes set to JSON punctuation and invalid UTF-8.
    ByteFlip,
    /// The text cut short.
    Truncate,
    /// Byte ranges deleted, duplicated, inserted, or spliced in from another fixture.
    ByteSplice,
}

impl Mutation {
    pub const ALL: [Mutation; 12] = [
        Mutation::TypeSwap,
        Mutation::Delete,
        Mutation::Insert,
        Mutation::DuplicateKey,
        Mutation::RenameKey,
        Mutation::HostileText,
        Mutation::EdgeNumber,
        Mutation::DeepNesting,
        Mutation::HugeString,
        Mutation::ByteFlip,
        Mutation::Truncate,
        Mutation::ByteSplice,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mutation::TypeSwap => "type-swap",
            Mutation::Delete => "delete",
            Mutation::Insert => "insert",
            Mutation::DuplicateKey => "duplicate-key",
            Mutation::RenameKey => "rename-key",
            Mutation::HostileText => "hostile-text",
            Mutation::EdgeNumber => "edge-number",
            Mutation::DeepNesting => "deep-nesting",
            Mutation::HugeString => "huge-string",
            Mutation::ByteFlip => "byte-flip",
            Mutation::Truncate => "truncate",
            Mutation::ByteSplice => "byte-splice",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// Structural mutations and their weights (per thousand): the costly ones (huge strings, deep
/// nesting) are rare so a million inputs stay within minutes.
const STRUCTURAL: [(Mutation, u32); 9] = [
    (Mutation::TypeSwap, 300),
    (Mutation::Delete, 150),
    (Mutation::Insert, 200),
    (Mutation::DuplicateKey, 100),
    (Mutation::RenameKey, 60),
    (Mutation::HostileText, 120),
    (Mutation::EdgeNumber, 60),
    (Mutation::DeepNesting, 8),
    (Mutation::HugeString, 2),
];

/// One generated body and the mutations it went through.
#[derive(Debug, Clone)]
pub struct Generated {
    pub body: Vec<u8>,
    mutations: u16,
}

impl Generated {
    pub fn has(&self, m: Mutation) -> bool {
        self.mutations & m.bit() != 0
    }
}

/// A JSON tree that can hold what `serde_json::Value` cannot.
#[derive(Debug, Clone)]
enum Node {
    Null,
    Bool(bool),
    /// The number's text as written, e.g. `1e400` or `01`.
    Num(String),
    /// The content, escaped when written; may be invalid UTF-8.
    Str(Vec<u8>),
    Arr(Vec<Node>),
    /// In order, duplicates allowed.
    Obj(Vec<(Vec<u8>, Node)>),
    /// Written verbatim: deep nesting, lone surrogate escapes.
    Raw(Vec<u8>),
}

impl Node {
    fn from_value(v: &Value) -> Node {
        match v {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(*b),
            Value::Number(n) => Node::Num(n.to_string()),
            Value::String(s) => Node::Str(s.as_bytes().to_vec()),
            Value::Array(a) => Node::Arr(a.iter().map(Node::from_value).collect()),
            Value::Object(o) => Node::Obj(
                o.iter()
                    .map(|(k, v)| (k.as_bytes().to_vec(), Node::from_value(v)))
                    .collect(),
            ),
        }
    }
}

/// Where a node sits: its path of child indexes, and the key it is found under (for an array
/// element, the array's key), which tells which fields belong there.
struct Site {
    path: Vec<usize>,
    key: Vec<u8>,
    is_member: bool,
    is_object: bool,
    is_string: bool,
    is_number: bool,
}

fn collect_sites(
    node: &Node,
    path: &mut Vec<usize>,
    key: &[u8],
    member: bool,
    out: &mut Vec<Site>,
) {
    out.push(Site {
        path: path.clone(),
        key: key.to_vec(),
        is_member: member,
        is_object: matches!(node, Node::Obj(_)),
        is_string: matches!(node, Node::Str(_)),
        is_number: matches!(node, Node::Num(_)),
    });
    match node {
        Node::Arr(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(i);
                collect_sites(item, path, key, false, out);
                path.pop();
            }
        }
        Node::Obj(members) => {
            for (i, (k, v)) in members.iter().enumerate() {
                path.push(i);
                collect_sites(v, path, k, true, out);
                path.pop();
            }
        }
        _ => {}
    }
}

fn node_at<'a>(root: &'a mut Node, path: &[usize]) -> Option<&'a mut Node> {
    let mut node = root;
    for &i in path {
        node = match node {
            Node::Arr(items) => items.get_mut(i)?,
            Node::Obj(members) => &mut members.get_mut(i)?.1,
            _ => return None,
        };
    }
    Some(node)
}

/// Applies `m` to the tree; false when the tree has no place for it.
fn apply(root: &mut Node, m: Mutation, rng: &mut fastrand::Rng) -> bool {
    let mut sites = Vec::new();
    collect_sites(root, &mut Vec::new(), b"", false, &mut sites);
    let choose = |rng: &mut fastrand::Rng, keep: &dyn Fn(&Site) -> bool| -> Option<usize> {
        let fit: Vec<usize> = (0..sites.len()).filter(|&i| keep(&sites[i])).collect();
        (!fit.is_empty()).then(|| fit[rng.usize(..fit.len())])
    };
    // Prefers the sites `prefer` picks, most of the time, then any site `keep` allows.
    let prefer_then = |rng: &mut fastrand::Rng,
                       prefer: &dyn Fn(&Site) -> bool,
                       keep: &dyn Fn(&Site) -> bool|
     -> Option<usize> {
        if rng.u8(..10) < 7 {
            if let Some(i) = choose(rng, prefer) {
                return Some(i);
            }
        }
        choose(rng, keep)
    };
    let replace = |root: &mut Node, site: Option<usize>, with: Node| -> bool {
        match site.and_then(|i| node_at(root, &sites[i].path)) {
            Some(slot) => {
                *slot = with;
                true
            }
            None => false,
        }
    };
    match m {
        Mutation::TypeSwap => {
            let site = choose(rng, &|_| true);
            let with = random_value(rng, 0);
            replace(root, site, with)
        }
        Mutation::HostileText => {
            let site = prefer_then(rng, &|s| s.is_string && is_url_or_path_key(&s.key), &|s| {
                s.is_string
            });
            let with = hostile_string(rng);
            replace(root, site, with)
        }
        Mutation::EdgeNumber => {
            let site = prefer_then(rng, &|s| s.is_number || is_number_key(&s.key), &|_| true);
            let with = edge_number(rng);
            replace(root, site, with)
        }
        Mutation::DeepNesting => {
            let site = choose(rng, &|_| true);
            let with = deep_nesting(rng);
            replace(root, site, with)
        }
        Mutation::HugeString => {
            let site = prefer_then(rng, &|s| s.is_string, &|_| true);
            let with = huge_string(rng);
            replace(root, site, with)
        }
        Mutation::Delete => {
            let Some(i) = choose(rng, &|s| !s.path.is_empty()) else {
                return false;
            };
            let (last, parent) = match sites[i].path.split_last() {
                Some(split) => split,
                None => return false,
            };
            match node_at(root, parent) {
                Some(Node::Arr(items)) if *last < items.len() => {
                    items.remove(*last);
                    true
                }
                Some(Node::Obj(members)) if *last < members.len() => {
                    members.remove(*last);
                    true
                }
                _ => false,
            }
        }
        Mutation::Insert => {
            let Some(i) = choose(rng, &|s| s.is_object) else {
                return false;
            };
            let key = if rng.u8(..5) != 0 {
                pick(rng, known_fields(&sites[i].key)).as_bytes().to_vec()
            } else {
                random_key(rng)
            };
            let value = if rng.u8(..5) < 3 {
                plausible(rng, &key)
            } else {
                random_value(rng, 0)
            };
            match node_at(root, &sites[i].path) {
                Some(Node::Obj(members)) => {
                    let at = rng.usize(..=members.len());
                    members.insert(at, (key, value));
                    true
                }
                _ => false,
            }
        }
        Mutation::DuplicateKey => {
            let Some(i) = choose(rng, &|s| s.is_member) else {
                return false;
            };
            let (last, parent) = match sites[i].path.split_last() {
                Some(split) => split,
                None => return false,
            };
            let key = sites[i].key.clone();
            let value = match rng.u8(..5) {
                0 => None,
                1..=2 => Some(plausible(rng, &key)),
                _ => Some(random_value(rng, 0)),
            };
            match node_at(root, parent) {
                Some(Node::Obj(members)) if *last < members.len() => {
                    let copy = value.unwrap_or_else(|| members[*last].1.clone());
                    let at = rng.usize(..=members.len());
                    members.insert(at, (key, copy));
                    true
                }
                _ => false,
            }
        }
        Mutation::RenameKey => {
            let Some(i) = choose(rng, &|s| s.is_member) else {
                return false;
            };
            let (last, parent) = match sites[i].path.split_last() {
                Some(split) => split,
                None => return false,
            };
            let new_key = near_miss_key(rng, &sites[i].key);
            match node_at(root, parent) {
                Some(Node::Obj(members)) if *last < members.len() => {
                    members[*last].0 = new_key;
                    true
                }
                _ => false,
            }
        }
        Mutation::ByteFlip | Mutation::Truncate | Mutation::ByteSplice => false,
    }
}

/// How the tree is written out.
struct Style {
    layout: Layout,
    escape_non_ascii: bool,
    escape_slash: bool,
}

enum Layout {
    Compact,
    Pretty,
    /// Random JSON whitespace between tokens.
    Loose,
}

fn whitespace(rng: &mut fastrand::Rng, style: &Style, depth: usize, out: &mut Vec<u8>) {
    match style.layout {
        Layout::Compact => {}
        Layout::Pretty => {
            out.push(b'\n');
            out.extend(std::iter::repeat_n(b' ', 2 * depth.min(64)));
        }
        Layout::Loose => {
            for _ in 0..rng.usize(0..=3) {
                out.push(pick(rng, b" \t\r\n"));
            }
        }
    }
}

fn write_str(s: &[u8], style: &Style, out: &mut Vec<u8>) {
    out.push(b'"');
    for chunk in s.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '/' if style.escape_slash => out.extend_from_slice(b"\\/"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\t' => out.extend_from_slice(b"\\t"),
                c if (c as u32) < 0x20 || (style.escape_non_ascii && !c.is_ascii()) => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        out.extend_from_slice(format!("\\u{unit:04x}").as_bytes());
                    }
                }
                c => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        out.extend_from_slice(chunk.invalid());
    }
    out.push(b'"');
}

fn write(node: &Node, style: &Style, rng: &mut fastrand::Rng, depth: usize, out: &mut Vec<u8>) {
    match node {
        Node::Null => out.extend_from_slice(b"null"),
        Node::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Node::Num(n) => out.extend_from_slice(n.as_bytes()),
        Node::Str(s) => write_str(s, style, out),
        Node::Raw(r) => out.extend_from_slice(r),
        Node::Arr(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                whitespace(rng, style, depth + 1, out);
                write(item, style, rng, depth + 1, out);
            }
            if !items.is_empty() {
                whitespace(rng, style, depth, out);
            }
            out.push(b']');
        }
        Node::Obj(members) => {
            out.push(b'{');
            for (i, (k, v)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                whitespace(rng, style, depth + 1, out);
                write_str(k, style, out);
                out.push(b':');
                if !matches!(style.layout, Layout::Compact) {
                    out.push(b' ');
                }
                write(v, style, rng, depth + 1, out);
            }
            if !members.is_empty() {
                whitespace(rng, style, depth, out);
            }
            out.push(b'}');
        }
    }
}

/// Bytes that change what the JSON means when they land somewhere else.
const INTERESTING_BYTES: &[u8] = b"\0\"\\{}[],:0-e .\xFF\x80\xC3\n";

fn damage(body: &mut Vec<u8>, other: &[u8], rng: &mut fastrand::Rng) -> Mutation {
    if body.is_empty() {
        body.extend_from_slice(other);
    }
    match rng.u8(..20) {
        0..=9 => {
            for _ in 0..rng.usize(1..=4) {
                let i = rng.usize(..body.len());
                if rng.bool() {
                    body[i] ^= 1 << rng.u8(..8);
                } else {
                    body[i] = pick(rng, INTERESTING_BYTES);
                }
            }
            Mutation::ByteFlip
        }
        10..=12 => {
            body.truncate(rng.usize(..body.len()));
            Mutation::Truncate
        }
        _ => {
            let start = rng.usize(..body.len());
            let end = (start + rng.usize(1..=64)).min(body.len());
            match rng.u8(..4) {
                0 => {
                    body.drain(start..end);
                }
                1 => {
                    let copy = body[start..end].to_vec();
                    let at = rng.usize(..=body.len());
                    body.splice(at..at, copy);
                }
                2 => {
                    let noise: Vec<u8> = (0..rng.usize(1..=8)).map(|_| rng.u8(..)).collect();
                    body.splice(start..start, noise);
                }
                _ => {
                    // The head of this body, the tail of another fixture.
                    let from = rng.usize(..=other.len());
                    body.truncate(start);
                    body.extend_from_slice(&other[from..]);
                }
            }
            Mutation::ByteSplice
        }
    }
}

/// The generator: fixtures in, one deterministic hostile body per index out.
pub struct Generator {
    seed: u64,
    trees: Vec<Node>,
    raw: Vec<Vec<u8>>,
}

impl Generator {
    /// Fails when there is no fixture or one is not JSON.
    pub fn new(fixtures: &[(String, Vec<u8>)], seed: u64) -> Result<Self, String> {
        if fixtures.is_empty() {
            return Err("no valid job fixture to mutate".into());
        }
        let trees = fixtures
            .iter()
            .map(|(name, body)| {
                serde_json::from_slice::<Value>(body)
                    .map(|v| Node::from_value(&v))
                    .map_err(|e| format!("{name}: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            seed,
            trees,
            raw: fixtures.iter().map(|(_, body)| body.clone()).collect(),
        })
    }

    /// Input `index` of this seed.
    pub fn input(&self, index: u64) -> Generated {
        let mut rng = fastrand::Rng::with_seed(splitmix(self.seed ^ splitmix(index)));
        let mut tree = self.trees[rng.usize(..self.trees.len())].clone();
        let mut mutations = 0u16;
        let mut count = 1;
        while count < 6 && rng.u8(..10) < 4 {
            count += 1;
        }
        for _ in 0..count {
            let m = weighted(&mut rng);
            if apply(&mut tree, m, &mut rng) {
                mutations |= m.bit();
            }
        }
        let style = Style {
            layout: match rng.u8(..10) {
                0..=4 => Layout::Compact,
                5..=7 => Layout::Pretty,
                _ => Layout::Loose,
            },
            escape_non_ascii: rng.u8(..7) == 0,
            escape_slash: rng.u8(..10) == 0,
        };
        let mut body = Vec::new();
        write(&tree, &style, &mut rng, 0, &mut body);
        if rng.u8(..6) == 0 {
            let other = &self.raw[rng.usize(..self.raw.len())];
            for _ in 0..rng.usize(1..=3) {
                mutations |= damage(&mut body, other, &mut rng).bit();
            }
        }
        Generated { body, mutations }
    }
}

fn weighted(rng: &mut fastrand::Rng) -> Mutation {
    let total: u32 = STRUCTURAL.iter().map(|(_, w)| w).sum();
    let mut roll = rng.u32(..total);
    for (m, w) in STRUCTURAL {
        if roll < w {
            return m;
        }
        roll -= w;
    }
    Mutation::TypeSwap
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
