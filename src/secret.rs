//! Secrets are referenced from config (`env:NAME` or `file:PATH`), never written
//! in it, and print as `[redacted]`. Every secret purser reads is also
//! remembered, raw, URL-encoded and in base64, so that [`redact`] can take it
//! out of any text that leaves purser: a log line, a stored error, a chat
//! answer — whatever a server that echoes its request put in its error.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;
use std::sync::RwLock;

use base64::Engine;

/// The forms of every secret read so far, longest first. One list for the
/// process: secrets are read once, at start, and every output of every
/// task must be cleaned of all of them.
static KNOWN: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Shorter values would take ordinary words out of messages.
const SHORTEST: usize = 6;

fn remember(value: &str) {
    if value.chars().count() < SHORTEST {
        return;
    }
    // A robot's URL is a secret for the key in it, which a server echoes
    // without the host: each long query value and path segment is one too.
    if let Ok(url) = reqwest::Url::parse(value)
        && matches!(url.scheme(), "http" | "https")
    {
        let parts: Vec<String> = url
            .query_pairs()
            .map(|(_, v)| v.into_owned())
            .chain(url.path_segments().into_iter().flatten().map(str::to_owned))
            .filter(|p| p.len() >= 12)
            .collect();
        for part in parts {
            remember(&part);
        }
    }
    const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    let b64 = base64::engine::general_purpose::STANDARD.encode(value);
    let forms = [
        value.to_owned(),
        percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC)
            .to_string(),
        percent_encoding::utf8_percent_encode(value, UNRESERVED).to_string(),
        form_urlencoded::byte_serialize(value.as_bytes()).collect(),
        b64.trim_end_matches('=').to_owned(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value),
    ];
    let mut known = KNOWN.write().unwrap_or_else(|p| p.into_inner());
    for form in forms {
        if form.len() >= SHORTEST && !known.contains(&form) {
            known.push(form);
        }
    }
    known.sort_by_key(|f| std::cmp::Reverse(f.len()));
}

/// `text` with every secret purser has read, in any of its forms, replaced
/// by `[redacted]`.
pub fn redact(text: &str) -> Cow<'_, str> {
    let known = KNOWN.read().unwrap_or_else(|p| p.into_inner());
    if !known.iter().any(|k| text.contains(k.as_str())) {
        return Cow::Borrowed(text);
    }
    let mut out = text.to_owned();
    for k in known.iter() {
        if out.contains(k.as_str()) {
            out = out.replace(k.as_str(), "[redacted]");
        }
    }
    Cow::Owned(out)
}

/// Warns, as ssh does of keys, when a secret file can be read by its group
/// or by anyone.
fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    file = %path.display(),
                    mode = %format!("{mode:04o}"),
                    "a secret file others on this machine can read: chmod 600 it"
                );
            }
        }
    }
}

/// A writer that redacts what it writes (log lines on their way out).
pub struct Redacting<W>(pub W);

impl<W: std::io::Write> std::io::Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Resolves a reference. `base` is the directory relative file paths start from.
    pub fn resolve(reference: &str, base: &Path) -> Result<Secret, String> {
        if let Some(name) = reference.strip_prefix("env:") {
            let value = std::env::var(name).map_err(|_| {
                format!("environment variable {name} is not set (referenced as {reference:?})")
            })?;
            return Secret::non_empty(value.trim_end_matches(['\r', '\n']).to_owned(), reference);
        }
        if let Some(path) = reference.strip_prefix("file:") {
            let full = base.join(path);
            let value = std::fs::read_to_string(&full)
                .map_err(|e| format!("cannot read secret file {}: {e}", full.display()))?;
            warn_if_shared(&full);
            return Secret::non_empty(value.trim_end_matches(['\r', '\n']).to_owned(), reference);
        }
        Err(
            "a secret must be a reference, \"env:NAME\" or \"file:PATH\", never the secret itself"
                .to_owned(),
        )
    }

    fn non_empty(value: String, reference: &str) -> Result<Secret, String> {
        if value.is_empty() {
            Err(format!("the secret {reference:?} is empty"))
        } else {
            remember(&value);
            Ok(Secret(value))
        }
    }

    /// A secret obtained by other means than config (a vault client, a test).
    pub fn from_value(value: impl Into<String>) -> Secret {
        let value = value.into();
        remember(&value);
        Secret(value)
    }

    /// The secret's value, for signing. Never log or format what this returns.
    pub fn expose(&self) -> &str {
        &self.0
    }

    #[cfg(test)]
    pub fn for_tests(value: &str) -> Secret {
        Secret(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_secrets_are_refused() {
        let err = Secret::resolve("hunter2", Path::new(".")).unwrap_err();
        assert!(err.contains("env:NAME"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn file_secrets_are_read_and_redacted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s"), "topsecret\n").unwrap();
        let s = Secret::resolve("file:s", dir.path()).unwrap();
        assert_eq!(s.expose(), "topsecret");
        assert_eq!(format!("{s:?} {s}"), "Secret([redacted]) [redacted]");
    }

    #[test]
    fn every_form_of_a_secret_read_is_taken_out_of_text() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s"), "sk+live/Ab9=xyz").unwrap();
        let s = Secret::resolve("file:s", dir.path()).unwrap();
        let raw = s.expose().to_owned();
        let url = percent_encoding::utf8_percent_encode(&raw, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
        let form: String = form_urlencoded::byte_serialize(raw.as_bytes()).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
        let echoed = format!(
            "401: Authorization: Bearer {raw}; body client_secret={form}&x=1; path /bot{url}/send; basic {b64}"
        );
        let clean = redact(&echoed);
        for form in [
            raw.as_str(),
            url.as_str(),
            form.as_str(),
            b64.trim_end_matches('='),
        ] {
            assert!(!clean.contains(form), "{form} in {clean}");
        }
        assert!(
            clean.starts_with("401: Authorization: Bearer [redacted];"),
            "{clean}"
        );
        assert_eq!(redact("nothing secret here"), "nothing secret here");
        let mut out = Vec::new();
        std::io::Write::write_all(&mut Redacting(&mut out), echoed.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), clean);
    }

    #[test]
    fn missing_env_names_the_variable_only() {
        let err = Secret::resolve("env:PURSER_TEST_SURELY_UNSET", Path::new(".")).unwrap_err();
        assert!(err.contains("PURSER_TEST_SURELY_UNSET"));
    }
}
