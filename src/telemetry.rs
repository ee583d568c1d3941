//! Tracing set-up: JSON lines (or pretty text) on stderr, every line passed through the
//! redactor with the secrets of the jobs currently running, so no log line can carry a token
//! even when external text (a git error, agent stderr) is logged.

use std::io::{self, Write};
use std::sync::{Arc, RwLock};

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

/// A stderr writer that redacts each formatted line before it is written.
#[derive(Clone)]
pub struct RedactingStderr {
    secrets: SecretRegistry,
}

pub struct LineBuffer {
    secrets: SecretRegistry,
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
        let _ = io::stderr().lock().write_all(clean.as_bytes());
    }
}

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = LineBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        LineBuffer {
            secrets: self.secrets.clone(),
            buf: Vec::with_capacity(256),
        }
    }
}

/// Installs the global subscriber. `json` selects JSON lines; `level` is the default filter
/// (`RUST_LOG` wins).
pub fn init(json: bool, level: &str, secrets: SecretRegistry) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let writer = RedactingStderr { secrets };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
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
            .insert(field.name().into(), Value::String(value.to_string()));
    }

    // `%value` arrives here wrapped so that `Debug` prints its `Display`.
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Collects what the formatter writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;

        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn a_line_carries_the_job_spans_fields_at_the_top_level_written_with_display() {
        let out = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(out.clone())
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("job", jobId = %"job-7", attempt = 2u32, repo = %"o/r");
            let _in = span.enter();
            let version = Some((3, 10, 8));
            tracing::warn!(
                reason = %"rejected",
                failures = 3u64,
                version = %version.map(|(a, b, c)| format!("{a}.{b}.{c}")).unwrap_or_default(),
                "coding-agent: checkpoint push failed"
            );
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let line: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["jobId"], "job-7", "{text}");
        assert_eq!(line["attempt"], 2);
        assert_eq!(line["repo"], "o/r");
        assert_eq!(line["reason"], "rejected");
        assert_eq!(line["failures"], 3);
        assert_eq!(line["version"], "3.10.8");
        assert_eq!(line["message"], "coding-agent: checkpoint push failed");
        assert_eq!(line["level"], "WARN");
        assert!(line.get("span").is_none(), "no nested span object: {text}");
    }

    #[test]
    fn a_registered_secret_is_redacted_until_its_guard_drops() {
        let reg = SecretRegistry::default();
        let guard = reg.register([Secret::new("tok-registered-123")]);
        assert_eq!(reg.redactor().redact("x tok-registered-123 y"), "x *** y");
        drop(guard);
        assert_eq!(
            reg.redactor().redact("x tok-registered-123 y"),
            "x tok-registered-123 y"
        );
    }
}
