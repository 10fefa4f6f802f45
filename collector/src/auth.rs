//! Authentication: agent tokens (compared in constant time, never logged) and the generated
//! token file.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;
use subtle::ConstantTimeEq;

use crate::config::TokenSource;

/// The secrets agents may present.
pub struct AgentAuth {
    shared: Vec<u8>,
}

impl AgentAuth {
    /// Agents authenticate with `shared`.
    pub fn new(shared: String) -> Self {
        Self {
            shared: shared.into_bytes(),
        }
    }

    /// Whether an `Authorization` header value carries a valid token.
    pub fn accepts(&self, authorization: Option<&str>) -> bool {
        let Some(token) = authorization.and_then(bearer) else {
            return false;
        };
        bool::from(token.as_bytes().ct_eq(&self.shared))
    }
}

/// The token of a `Bearer TOKEN` header value.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The agent token, and whether it was generated just now.
pub struct ResolvedToken {
    /// The token.
    pub token: String,
    /// The file it came from or went to.
    pub path: Option<std::path::PathBuf>,
    /// Whether this start generated it.
    pub generated: bool,
}

/// Reads the token from its source, generating the token file (mode 0600) on first start.
pub fn resolve_agent_token(source: &TokenSource) -> anyhow::Result<ResolvedToken> {
    let path = match source {
        TokenSource::Given(token) => {
            return Ok(ResolvedToken {
                token: token.clone(),
                path: None,
                generated: false,
            });
        }
        TokenSource::File(path) => path,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim().to_owned();
            anyhow::ensure!(
                !token.is_empty(),
                "the agent token file {} is empty",
                path.display()
            );
            let mode = std::fs::metadata(path)?.permissions().mode();
            if mode & 0o077 != 0 {
                log::warn!(
                    "the agent token file {} is readable by other users (mode {:o}); chmod 600 it",
                    path.display(),
                    mode & 0o777
                );
            }
            Ok(ResolvedToken {
                token,
                path: Some(path.clone()),
                generated: false,
            })
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let token = generate_token()?;
            write_secret_file(path, &token)?;
            Ok(ResolvedToken {
                token,
                path: Some(path.clone()),
                generated: true,
            })
        }
        Err(err) => {
            Err(err).with_context(|| format!("cannot read the agent token file {}", path.display()))
        }
    }
}

/// A fresh random token: 32 bytes from the operating system, hex-encoded.
pub fn generate_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("cannot get random bytes: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Creates a file readable only by its owner and writes the secret into it.
fn write_secret_file(path: &Path, secret: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create the agent token file {}", path.display()))?;
    file.write_all(format!("{secret}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_checked_exactly() {
        let auth = AgentAuth::new("abc123".into());
        assert!(auth.accepts(Some("Bearer abc123")));
        assert!(auth.accepts(Some("bearer  abc123 ")));
        assert!(!auth.accepts(Some("Bearer abc124")));
        assert!(!auth.accepts(Some("Bearer abc12")));
        assert!(!auth.accepts(Some("Basic abc123")));
        assert!(!auth.accepts(Some("abc123")));
        assert!(!auth.accepts(None));
    }

    #[test]
    fn a_missing_token_file_is_generated_private_and_then_reused() {
        let dir = std::env::temp_dir().join(format!("hw-auth-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir); // Leftover of an earlier run, if any.
        let path = dir.join("hostwatch.db.agent-token");
        let first = resolve_agent_token(&TokenSource::File(path.clone())).unwrap();
        assert!(first.generated);
        assert_eq!(first.token.len(), 64);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let second = resolve_agent_token(&TokenSource::File(path.clone())).unwrap();
        assert!(!second.generated);
        assert_eq!(second.token, first.token);
        std::fs::write(&path, "\n").unwrap();
        assert!(resolve_agent_token(&TokenSource::File(path)).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
