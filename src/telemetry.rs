//! Tracing set-up: JSON lines (or text for a person at a terminal) on stderr or in a file,
//! every line passed through the redactor with the secrets of the jobs currently running, so no
//! log line can carry a token even when external text (a git error, agent stderr) is logged.

use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::Subscriber;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::redact::{Redactor, Secret};

/// The secrets of the jobs in flight, shared by the log writer and the worker.
#[derive(Clone, Default)]
pub struct SecretRegistry {
    inner: Arc<RwLock<Registered>>,
    next: Arc<std::sync::atomic::AtomicU64>,
}

/// The secrets, and the redactor built from them: rebuilt when a job starts or ends, not for
/// every log line.
#[derive(Default)]
struct Registered {
    secrets: Vec<(u64, Secret)>,
    redactor: Redactor,
}

impl Registered {
    fn rebuild(&mut self) {
        self.redactor = self
            .secrets
            .iter()
            .fold(Redactor::patterns_only(), |r, (_, s)| r.with_secret(s));
    }
}

/// Unregisters its secrets when dropped (when the job's task ends, however it ends).
pub struct SecretGuard {
    registry: SecretRegistry,
    id: u64,
}

impl Drop for SecretGuard {
    fn drop(&mut self) {
        if let Ok(mut r) = self.registry.inner.write() {
            r.secrets.retain(|(id, _)| *id != self.id);
            r.rebuild();
        }
    }
}

impl SecretRegistry {
    pub fn register(&self, secrets: impl IntoIterator<Item = Secret>) -> SecretGuard {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut r) = self.inner.write() {
            r.secrets.extend(secrets.into_iter().map(|s| (id, s)));
            r.rebuild();
        }
        SecretGuard {
            registry: self.clone(),
            id,
        }
    }

    /// Redacts `text` with the current secrets (no copy of the redactor per log line).
    pub fn redact(&self, text: &str) -> String {
        match self.inner.read() {
            Ok(r) => r.redactor.redact(text),
            Err(poisoned) => poisoned.into_inner().redactor.redact(text),
        }
    }

    pub fn redactor(&self) -> Redactor {
        match self.inner.read() {
            Ok(r) => r.redactor.clone(),
            // A poisoned lock must not let secrets through: patterns at least.
            Err(poisoned) => poisoned.into_inner().redactor.clone(),
        }
    }
}

/// Where log lines go.
pub enum LogTarget {
    Stderr,
    /// A file (the `run` command's, while its live status holds the terminal).
    File(std::fs::File),
}

impl LogTarget {
    fn is_terminal(&self) -> bool {
        match self {
            LogTarget::Stderr => io::stderr().is_terminal(),
            LogTarget::File(_) => false,
        }
    }
}

/// A writer that redacts each formatted line before it is written.
#[derive(Clone)]
pub struct RedactingWriter {
    secrets: SecretRegistry,
    /// `None` is stderr.
    file: Option<Arc<Mutex<std::fs::File>>>,
}

pub struct LineBuffer {
    secrets: SecretRegistry,
    file: Option<Arc<Mutex<std::fs::File>>>,
    buf: Vec<u8>,
}

impl Write for LineBuffer {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.buf);
        let clean = self.secrets.redact(&text);
        let _ = match &self.file {
            Some(file) => file
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .write_all(clean.as_bytes()),
            None => io::stderr().lock().write_all(clean.as_bytes()),
        };
    }
}

impl<'a> MakeWriter<'a> for RedactingWriter {
    type Writer = LineBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        LineBuffer {
            secrets: self.secrets.clone(),
            file: self.file.clone(),
            buf: Vec::with_capacity(256),
        }
    }
}

/// How lines look: `json` unless `format` asks for text (`pretty`) or leaves it to the target
/// (`auto`: text only on a terminal); colour only on a terminal, and never with `NO_COLOR`.
pub fn style(format: &str, terminal: bool, no_color: Option<&str>) -> (bool, bool) {
    let json = match format {
        "json" => true,
        "pretty" => false,
        _ => !terminal,
    };
    let colour = terminal && no_color.is_none_or(str::is_empty);
    (json, colour)
}

/// Installs the global subscriber: `format` as [`style`] reads it, `level` the default filter
/// (`RUST_LOG` wins), lines written to `target`.
pub fn init(format: &str, level: &str, target: LogTarget, secrets: SecretRegistry) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let no_color = std::env::var("NO_COLOR").ok();
    let (json, colour) = style(format, target.is_terminal(), no_color.as_deref());
    let file = match target {
        LogTarget::Stderr => None,
        LogTarget::File(f) => Some(Arc::new(Mutex::new(f))),
    };
    let writer = RedactingWriter { secrets, file };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(colour);
    // A second init (tests, `run` inside a process that already logs) is harmless.
    let _ = if json {
        builder
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .try_init()
    } else {
        builder.with_target(false).try_init()
    };
}

/// An error and its sources on one line, each text once: a source whose text the line already
/// holds (thiserror's `"...: {source}"`, lapin's `IO error: {0}`) is not repeated.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut next = error.source();
    while let Some(source) = next {
        let text = source.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        next = source.source();
    }
    line
}

/// One JSON object per line: `timestamp`, `level`, `target`, the fields of every span the
/// event is in (the job's `jobId`, `attempt`, `mode`, `repo`, `branch`), then the event's own
/// fields and `message`, all at the top level (contract 8). Values are written as JSON numbers
/// and booleans where they are ones, else with `Display`.
pub struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut line = Map::new();
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        line.insert("timestamp".into(), Value::String(timestamp));
        let meta = event.metadata();
        line.insert("level".into(), Value::String(meta.level().to_string()));
        line.insert("target".into(), Value::String(meta.target().to_owned()));
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<N>>() else {
                    continue;
                };
                if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields) {
                    line.extend(fields);
                }
            }
        }
        event.record(&mut FieldsToJson(&mut line));
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// Records an event's fields into a JSON object.
struct FieldsToJson<'a>(&'a mut Map<String, Value>);

impl Visit for FieldsToJson<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().into(), Value::String(value.into()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().into(), Value::String(error_chain(value)));
    }

    // `%value` arrives here wrapped so that `Debug` prints its `Display`.
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
}

#[cfg(test)]
#[path = "telemetry_tests.rs"]
mod tests;
