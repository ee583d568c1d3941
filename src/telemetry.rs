//! Tracing set-up: JSON lines (or pretty text) on stderr, every line passed through the
//! redactor with the secrets of the jobs currently running, so no log line can carry a token
//! even when external text (a git error, agent stderr) is logged.

use std::io::{self, Write};
use std::sync::{Arc, RwLock};

use tracing_subscriber::fmt::MakeWriter;
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
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.with_target(false).try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

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
