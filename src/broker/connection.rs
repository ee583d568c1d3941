//! A named connection with a negotiated heartbeat, and the broker's version.
//!
//! lapin 4 drops the server properties of `connection.start`, so [`connect`] reads the
//! version itself: it opens a second, short-lived socket, sends the protocol header, reads the
//! broker's `connection.start` and closes. The broker logs that socket as a client that closed
//! before the handshake; it costs one line in its log per connect.

use std::io::{Read, Write};
use std::ops::Deref;
use std::time::Duration;

use lapin::types::AMQPValue;
use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties};
use tracing::{debug, info, warn};

use super::BrokerError;

/// How long reading the broker's version may take before it is reported as unknown.
const VERSION_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// A `connection.start` frame is a few hundred bytes; anything far larger is not one.
const MAX_START_FRAME: usize = 1 << 20;

/// A connection and the version of the broker at its other end (`major, minor, patch`), read
/// when it was opened. Derefs to the lapin [`Connection`].
#[derive(Debug)]
pub struct BrokerConnection {
    conn: Connection,
    version: Option<(u32, u32, u32)>,
}

impl BrokerConnection {
    /// The broker's version, `None` when it could not be read.
    pub fn version(&self) -> Option<(u32, u32, u32)> {
        self.version
    }

    /// The version as `3.10.8`, or `unknown`.
    pub fn version_text(&self) -> String {
        self.version
            .map_or_else(|| "unknown".to_owned(), |(a, b, c)| format!("{a}.{b}.{c}"))
    }
}

impl Deref for BrokerConnection {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.conn
    }
}

/// Connects to `url` as `connection_name` (the name the broker's tools show), negotiating a
/// `heartbeat_secs` heartbeat unless the URL's query already sets `heartbeat=`.
///
/// The URL's password never reaches a log line or an error: both show [`redact_url`].
pub async fn connect(
    url: &str,
    connection_name: &str,
    heartbeat_secs: u16,
) -> Result<BrokerConnection, BrokerError> {
    let shown = redact_url(url);
    let full = with_heartbeat(url, heartbeat_secs);
    let uri: AMQPUri = full
        .parse()
        .map_err(|reason: String| BrokerError::InvalidUrl {
            url: shown.clone(),
            // The parser quotes the whole URL in some of its messages.
            reason: reason.replace(&full, &redact_url(&full)),
        })?;
    let properties = ConnectionProperties::default().with_connection_name(connection_name.into());
    let conn = Connection::connect_uri(uri.clone(), properties)
        .await
        .map_err(|source| BrokerError::Connect {
            url: shown.clone(),
            source,
        })?;

    let version = read_server_version(uri).await;
    let conn = BrokerConnection { conn, version };
    info!(
        url = %shown,
        connection_name,
        heartbeat_secs = conn.configuration().heartbeat(),
        server_version = %conn.version_text(),
        "connected to the broker"
    );
    Ok(conn)
}

/// The broker's version (`major.minor.patch`) as [`connect`] read it from the broker's
/// `connection.start` server properties; `None` when it could not be read.
pub fn server_version(conn: &BrokerConnection) -> Option<(u32, u32, u32)> {
    conn.version()
}

/// `url` with the password of its userinfo replaced by `***`, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        // `scheme:user:pass@host` does not parse as an AMQP URL but can still hold a secret.
        return match (url.find(':'), url.rfind('@')) {
            (Some(colon), Some(at)) if colon < at => format!("{}:***{}", &url[..colon], &url[at..]),
            _ => url.to_owned(),
        };
    };
    let authority_start = scheme_end + 3;
    let rest = &url[authority_start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    match authority[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..authority_start],
            &authority[..colon],
            &rest[at..]
        ),
        None => url.to_owned(),
    }
}

/// `url` with `heartbeat=<secs>` appended to its query, unless the query already has one
/// (an operator's explicit choice wins).
fn with_heartbeat(url: &str, secs: u16) -> String {
    let (base, fragment) = url.split_at(url.find('#').unwrap_or(url.len()));
    let (sep, present) = match base.split_once('?') {
        Some((_, query)) => {
            let present = query
                .split('&')
                .any(|pair| pair.split('=').next() == Some("heartbeat"));
            let sep = if query.is_empty() || query.ends_with('&') {
                ""
            } else {
                "&"
            };
            (sep, present)
        }
        None => ("?", false),
    };
    if present {
        url.to_owned()
    } else {
        format!("{base}{sep}heartbeat={secs}{fragment}")
    }
}

/// Parses a RabbitMQ version string (`3.10.8`, `3.13.0-rc.1`, `4.0`) into numbers; missing
/// or non-numeric minor and patch parts count as 0.
pub(crate) fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    fn leading_number(part: &str) -> Option<u32> {
        let digits: &str = &part[..part
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(part.len())];
        digits.parse().ok()
    }
    let mut parts = text.trim().splitn(3, '.');
    let major = leading_number(parts.next()?)?;
    let minor = parts.next().and_then(leading_number).unwrap_or(0);
    let patch = parts.next().and_then(leading_number).unwrap_or(0);
    Some((major, minor, patch))
}

async fn read_server_version(uri: AMQPUri) -> Option<(u32, u32, u32)> {
    let probe = tokio::task::spawn_blocking(move || probe_version(uri));
    let text = match tokio::time::timeout(VERSION_PROBE_TIMEOUT, probe).await {
        Ok(Ok(Ok(text))) => text,
        Ok(Ok(Err(reason))) => {
            warn!(%reason, "cannot read the broker's version");
            return None;
        }
        Ok(Err(join)) => {
            warn!(error = %join, "the broker version probe did not finish");
            return None;
        }
        Err(_) => {
            warn!("timed out reading the broker's version");
            return None;
        }
    };
    let version = parse_version(&text);
    if version.is_none() {
        warn!(version = %text, "the broker reports a version that does not parse");
    }
    debug!(version = %text, "broker version");
    version
}

/// Reads the `version` server property from the broker's `connection.start`. Blocking.
fn probe_version(mut uri: AMQPUri) -> Result<String, String> {
    use lapin::tcp::AMQPUriTcpExt;

    let timeout_ms = VERSION_PROBE_TIMEOUT.as_millis() as u64;
    uri.query.connection_timeout.get_or_insert(timeout_ms);
    let mut stream = uri.connect().map_err(|e| e.to_string())?;
    let io = |e: std::io::Error| e.to_string();
    stream.set_nonblocking(false).map_err(io)?;
    stream
        .set_read_timeout(Some(VERSION_PROBE_TIMEOUT))
        .map_err(io)?;
    stream
        .set_write_timeout(Some(VERSION_PROBE_TIMEOUT))
        .map_err(io)?;
    stream.write_all(b"AMQP\x00\x00\x09\x01").map_err(io)?;
    stream.flush().map_err(io)?;

    let mut header = [0u8; 7];
    stream.read_exact(&mut header).map_err(io)?;
    if &header[..4] == b"AMQP" {
        return Err("the broker does not speak AMQP 0-9-1".into());
    }
    let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]) as usize;
    if header[0] != 1 || size > MAX_START_FRAME {
        return Err("the broker's first frame is not connection.start".into());
    }
    let mut payload = vec![0u8; size];
    stream.read_exact(&mut payload).map_err(io)?;
    start_frame_version(&payload)
}

/// The `version` server property of a `connection.start` method payload.
fn start_frame_version(payload: &[u8]) -> Result<String, String> {
    // class 10 (connection), method 10 (start), then version-major and version-minor octets.
    if payload.len() < 6 || payload[..4] != [0, 10, 0, 10] {
        return Err("the broker's first frame is not connection.start".into());
    }
    let (_, table) = lapin::types::parsing::parse_field_table(&payload[6..])
        .map_err(|_| "the broker's server properties do not parse".to_owned())?;
    match table.inner().get("version") {
        Some(AMQPValue::LongString(text)) => Ok(String::from_utf8_lossy(text.as_bytes()).into()),
        Some(AMQPValue::ShortString(text)) => Ok(text.to_string()),
        _ => Err("the broker sends no version server property".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::{FieldTable, LongString};

    #[test]
    fn versions_parse_with_missing_parts_and_suffixes() {
        assert_eq!(parse_version("3.10.8"), Some((3, 10, 8)));
        assert_eq!(parse_version("3.13.0-rc.1"), Some((3, 13, 0)));
        assert_eq!(parse_version("4.0"), Some((4, 0, 0)));
        assert_eq!(parse_version(" 3.12.1+45.gabc "), Some((3, 12, 1)));
        assert_eq!(parse_version("unknown"), None);
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn version_comparison_orders_minor_numbers_numerically() {
        assert!(parse_version("3.10.8") < Some((3, 12, 0)));
        assert!(parse_version("3.12.0") >= Some((3, 12, 0)));
        assert!(parse_version("4.0.1") >= Some((3, 12, 0)));
    }

    #[test]
    fn a_heartbeat_is_appended_to_a_url_without_query() {
        assert_eq!(
            with_heartbeat("amqp://guest:guest@127.0.0.1:5672/%2f", 30),
            "amqp://guest:guest@127.0.0.1:5672/%2f?heartbeat=30"
        );
    }

    #[test]
    fn a_heartbeat_joins_an_existing_query() {
        assert_eq!(
            with_heartbeat("amqp://h/%2f?frame_max=8192", 15),
            "amqp://h/%2f?frame_max=8192&heartbeat=15"
        );
        assert_eq!(
            with_heartbeat("amqp://h/%2f?", 15),
            "amqp://h/%2f?heartbeat=15"
        );
        assert_eq!(
            with_heartbeat("amqp://h/%2f#frag", 15),
            "amqp://h/%2f?heartbeat=15#frag"
        );
    }

    #[test]
    fn a_heartbeat_already_in_the_url_is_kept() {
        let url = "amqp://h/%2f?frame_max=8192&heartbeat=5";
        assert_eq!(with_heartbeat(url, 30), url);
        // A key merely containing the word is not a heartbeat setting.
        assert_eq!(
            with_heartbeat("amqp://h/%2f?xheartbeat=5", 30),
            "amqp://h/%2f?xheartbeat=5&heartbeat=30"
        );
    }

    #[test]
    fn the_appended_heartbeat_reaches_the_parsed_uri() {
        let uri: AMQPUri = with_heartbeat("amqp://guest:guest@localhost/%2f", 17)
            .parse()
            .unwrap();
        assert_eq!(uri.query.heartbeat, Some(17));
        assert_eq!(uri.vhost, "/");
    }

    #[test]
    fn a_url_password_is_masked() {
        assert_eq!(
            redact_url("amqp://guest:s3cr3t@broker:5672/%2f?heartbeat=5"),
            "amqp://guest:***@broker:5672/%2f?heartbeat=5"
        );
        assert_eq!(
            redact_url("amqps://user:p%40ss@broker"),
            "amqps://user:***@broker"
        );
        assert_eq!(redact_url("amqp://broker/%2f"), "amqp://broker/%2f");
        assert_eq!(redact_url("amqp://user@broker"), "amqp://user@broker");
    }

    #[tokio::test]
    async fn an_unparsable_url_error_does_not_show_the_password() {
        for url in [
            "amqp:guest:s3cr3t@broker/%2f",
            "amqp://guest:s3cr3t@[broken/%2f",
        ] {
            let err = connect(url, "test", 10).await.unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, BrokerError::InvalidUrl { .. }), "{text}");
            assert!(!text.contains("s3cr3t"), "{text}");
        }
    }

    #[test]
    fn the_version_is_read_from_a_connection_start_payload() {
        let mut props = FieldTable::default();
        props.insert(
            "product".into(),
            AMQPValue::LongString(LongString::from("RabbitMQ")),
        );
        props.insert(
            "version".into(),
            AMQPValue::LongString(LongString::from("3.10.8")),
        );
        let mut table = Vec::new();
        for (key, value) in props.inner() {
            table.push(key.as_str().len() as u8);
            table.extend_from_slice(key.as_str().as_bytes());
            let AMQPValue::LongString(text) = value else {
                unreachable!()
            };
            table.push(b'S');
            table.extend_from_slice(&(text.as_bytes().len() as u32).to_be_bytes());
            table.extend_from_slice(text.as_bytes());
        }
        let mut payload = vec![0, 10, 0, 10, 0, 9];
        payload.extend_from_slice(&(table.len() as u32).to_be_bytes());
        payload.extend_from_slice(&table);
        assert_eq!(start_frame_version(&payload).as_deref(), Ok("3.10.8"));

        assert!(start_frame_version(&[0, 10, 0, 11, 0, 9]).is_err());
    }
}
