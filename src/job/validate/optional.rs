//! The optional parts of a job that never refuse it (seed sections 2.5, 2.7, 2.8, 2.9): each
//! malformed value is dropped and the default applies.

use std::collections::HashSet;

use serde_json::Value;

use super::{is_true, nes, object};
use crate::job::sanitize::{is_reserved_env_name, sanitize_context_file_name};
use crate::job::{
    CheckSpec, ContextFile, FrontendInfraSpec, GuardLimitsSpec, InfraSpec, OutputKind, OutputSpec,
    ServiceEnvironment, ServiceInfraSpec, ValidationChecksSpec,
};

/// Attempts a job gets when `validationChecks.maxAttempts` is absent or unusable.
const DEFAULT_VALIDATION_ATTEMPTS: u32 = 3;
/// The most attempts a job may ask for.
const MAX_VALIDATION_ATTEMPTS: u32 = 10;

pub(super) fn output(v: Option<&Value>) -> Option<OutputSpec> {
    let o = object(v)?;
    Some(OutputSpec {
        kind: match o.get("kind").and_then(Value::as_str) {
            Some("structured") => OutputKind::Structured,
            _ => OutputKind::Prose,
        },
        shape_hint: o
            .get("shapeHint")
            .and_then(Value::as_str)
            .map(str::to_owned),
        repair: o.get("repair").and_then(Value::as_bool),
        fail_on_unusable_final: is_true(o.get("failOnUnusableFinal")),
    })
}

pub(super) fn infra(v: Option<&Value>) -> Option<InfraSpec> {
    let o = object(v)?;
    if o.get("kind").and_then(Value::as_str) == Some("frontend") {
        return Some(InfraSpec::Frontend(frontend(o)));
    }
    let environment = match o.get("environment").and_then(Value::as_str) {
        Some("local") => ServiceEnvironment::Local,
        Some("ephemeral") => ServiceEnvironment::Ephemeral,
        _ => return None,
    };
    Some(InfraSpec::Service(ServiceInfraSpec {
        environment,
        no_infra_dependencies: is_true(o.get("noInfraDependencies")),
        compose_path: owned_nes(o.get("composePath")),
        environment_url: owned_nes(o.get("environmentUrl")),
    }))
}

fn frontend(o: &serde_json::Map<String, Value>) -> FrontendInfraSpec {
    let one_of = |key: &str, allowed: &[&str]| {
        o.get(key)
            .and_then(Value::as_str)
            .filter(|s| allowed.contains(s))
            .map(str::to_owned)
    };
    FrontendInfraSpec {
        package_manager: one_of("packageManager", &["pnpm", "npm", "yarn"]),
        install: owned_nes(o.get("install")),
        build_script: owned_nes(o.get("buildScript")),
        output_dir: owned_nes(o.get("outputDir")),
        serve_mode: one_of("serveMode", &["static", "command"]),
        serve_script: owned_nes(o.get("serveScript")),
        serve_port: port(o.get("servePort")),
        env_injection: one_of("envInjection", &["build", "runtime"]),
        env: env(o.get("env")),
        wiremock_mappings_path: owned_nes(o.get("wiremockMappingsPath")),
        wiremock_port: port(o.get("wiremockPort")),
    }
}

/// String values only, reserved names dropped; `None` when nothing survives.
fn env(v: Option<&Value>) -> Option<Vec<(String, String)>> {
    let kept: Vec<(String, String)> = object(v)?
        .iter()
        .filter(|(k, _)| !k.is_empty() && !is_reserved_env_name(k))
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect();
    (!kept.is_empty()).then_some(kept)
}

/// A positive finite number, floored (the seed's `Math.floor` after a `> 0` check).
fn positive_floor(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64)
        .filter(|n| n.is_finite() && *n > 0.0)
        .map(f64::floor)
}

/// A port that can bind: a fraction below 1 floors to 0 and is dropped with the rest.
fn port(v: Option<&Value>) -> Option<u16> {
    positive_floor(v)
        .filter(|n| (1.0..=65535.0).contains(n))
        .map(|n| n as u16)
}

pub(super) fn guard_limits(v: Option<&Value>) -> Option<GuardLimitsSpec> {
    let o = object(v)?;
    // Saturating: a knob beyond u64 means "no limit" just as the seed's huge double does.
    let knob = |key: &str| positive_floor(o.get(key)).map(|n| n as u64);
    let spec = GuardLimitsSpec {
        max_tool_calls_without_edit: knob("maxToolCallsWithoutEdit"),
        max_consecutive_errors: knob("maxConsecutiveErrors"),
        max_consecutive_web_calls: knob("maxConsecutiveWebCalls"),
        max_consecutive_mcp_calls: knob("maxConsecutiveMcpCalls"),
        max_consecutive_non_action_calls: knob("maxConsecutiveNonActionCalls"),
    };
    (spec != GuardLimitsSpec::default()).then_some(spec)
}

pub(super) fn context_files(v: Option<&Value>) -> Vec<ContextFile> {
    let Some(Value::Array(entries)) = v else {
        return Vec::new();
    };
    let mut used = HashSet::new();
    let mut files = Vec::new();
    for e in entries.iter().filter_map(Value::as_object) {
        let Some(path) = e
            .get("path")
            .and_then(Value::as_str)
            .and_then(sanitize_context_file_name)
        else {
            continue;
        };
        if used.contains(&path) {
            continue; // first wins
        }
        // Checked before the name is taken, so a later entry with content can still claim it.
        let Some(content) = e.get("content").and_then(Value::as_str) else {
            continue;
        };
        used.insert(path.clone());
        files.push(ContextFile {
            title: e
                .get("title")
                .and_then(Value::as_str)
                .unwrap_or(&path)
                .to_owned(),
            url: e
                .get("url")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            content: content.to_owned(),
            path,
        });
    }
    files
}

/// `validationChecks` (seed-later 1.1): entries without a non-blank string command are
/// dropped, a blank label becomes the command, and no usable check means no field.
/// `maxAttempts` is floored and clamped to 1..=10 (the seed kept a floored 0, quirk).
pub(super) fn validation_checks(v: Option<&Value>) -> Option<ValidationChecksSpec> {
    let o = object(v)?;
    let Some(Value::Array(entries)) = o.get("checks") else {
        return None;
    };
    let checks: Vec<CheckSpec> = entries
        .iter()
        .filter_map(Value::as_object)
        .filter_map(|e| {
            let command = e
                .get("command")
                .and_then(Value::as_str)
                .filter(|c| !c.trim().is_empty())?;
            let label = nes(e.get("label"))
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .unwrap_or(command);
            Some(CheckSpec {
                label: label.to_owned(),
                command: command.to_owned(),
            })
        })
        .collect();
    if checks.is_empty() {
        return None;
    }
    let max_attempts = positive_floor(o.get("maxAttempts"))
        .map_or(DEFAULT_VALIDATION_ATTEMPTS, |n| {
            n.min(f64::from(MAX_VALIDATION_ATTEMPTS)) as u32
        })
        .clamp(1, MAX_VALIDATION_ATTEMPTS);
    Some(ValidationChecksSpec {
        checks,
        max_attempts,
    })
}

/// `dependencyInstall.command`, trimmed; blank or not a string means none.
pub(super) fn dependency_install(v: Option<&Value>) -> Option<String> {
    let command = object(v)?.get("command")?.as_str()?.trim();
    (!command.is_empty()).then(|| command.to_owned())
}

/// The non-empty strings of an array; anything else is no list.
pub(super) fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| nes(Some(i)))
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

fn owned_nes(v: Option<&Value>) -> Option<String> {
    nes(v).map(str::to_owned)
}
