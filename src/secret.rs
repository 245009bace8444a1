//! Secrets are referenced from config (`env:NAME` or `file:PATH`), never written
//! in it, and print as `[redacted]`.

use std::fmt;
use std::path::Path;

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
            Ok(Secret(value))
        }
    }

    /// A secret obtained by other means than config (a vault client, a test).
    pub fn from_value(value: impl Into<String>) -> Secret {
        Secret(value.into())
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
    fn missing_env_names_the_variable_only() {
        let err = Secret::resolve("env:PURSER_TEST_SURELY_UNSET", Path::new(".")).unwrap_err();
        assert!(err.contains("PURSER_TEST_SURELY_UNSET"));
    }
}
