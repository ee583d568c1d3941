//! The log line format, the redaction of registered secrets, the style a target gets and
//! error chains.

use super::*;

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

#[test]
fn text_and_colour_only_for_a_terminal_and_never_with_no_color() {
    // (format, terminal, NO_COLOR) -> (json, colour)
    assert_eq!(style("auto", false, None), (true, false));
    assert_eq!(style("auto", true, None), (false, true));
    assert_eq!(style("auto", true, Some("1")), (false, false));
    assert_eq!(
        style("auto", true, Some("")),
        (false, true),
        "empty is unset"
    );
    assert_eq!(style("json", true, None), (true, true));
    assert_eq!(style("pretty", false, None), (false, false));
}

#[derive(Debug, thiserror::Error)]
#[error("cannot connect to amqp://h: {source}")]
struct Outer {
    source: Middle,
}

#[derive(Debug, thiserror::Error)]
#[error("IO error: {0}")]
struct Middle(#[source] io::Error);

#[test]
fn an_error_chain_holds_each_text_once() {
    let e = Outer {
        source: Middle(io::Error::from(io::ErrorKind::ConnectionRefused)),
    };
    let line = error_chain(&e);
    assert_eq!(
        line,
        format!("cannot connect to amqp://h: IO error: {}", e.source.0)
    );
    // A source Display leaves out is still shown, once.
    #[derive(Debug, thiserror::Error)]
    #[error("publish failed")]
    struct Terse(#[source] io::Error);
    let line = error_chain(&Terse(io::Error::other("nacked")));
    assert_eq!(line, "publish failed: nacked");
}
