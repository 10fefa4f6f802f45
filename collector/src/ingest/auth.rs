//! Agent authentication: agent tokens (shared and per-host, revocable) and the generated token
//! file. Every secret is compared in constant time and never logged. Viewer and admin access
//! for the page, the API and `/live` is [`crate::api::access`].

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;
use subtle::ConstantTimeEq;

use crate::config::TokenSource;

/// What an agent's token entitles it to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentCredential {
    /// The shared token: any host id.
    Shared,
    /// A per-host token: only this host id.
    Host(String),
    /// The collector's own self-monitoring, which needs no token.
    InProcess,
}

/// The outcome of checking an agent's token at the upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentCheck {
    /// Valid.
    Accepted(AgentCredential),
    /// A per-host token that was removed from the tokens file (HTTP 403).
    Revoked,
    /// Missing or unknown (HTTP 401).
    Rejected,
}

/// The secrets agents may present: a shared token and per-host tokens.
#[derive(Default)]
pub struct AgentAuth {
    shared: Option<Vec<u8>>,
    per_host: Vec<(String, Vec<u8>)>,
    revoked: Vec<Vec<u8>>,
}

impl AgentAuth {
    /// Agents authenticate with `shared` (if any) or their line in `per_host`.
    pub fn new(shared: Option<String>, per_host: Vec<(String, String)>) -> Self {
        Self {
            shared: shared.map(String::into_bytes),
            per_host: per_host
                .into_iter()
                .map(|(host, token)| (host, token.into_bytes()))
                .collect(),
            revoked: Vec::new(),
        }
    }

    /// The same shared token with a re-read per-host list; tokens that disappeared from the list
    /// are remembered as revoked, so they get a 403 rather than a 401.
    pub fn reloaded(&self, per_host: Vec<(String, String)>) -> Self {
        let per_host: Vec<(String, Vec<u8>)> =
            per_host.into_iter().map(|(host, token)| (host, token.into_bytes())).collect();
        let mut revoked = self.revoked.clone();
        for (_, old) in &self.per_host {
            if !per_host.iter().any(|(_, new)| new == old) && !revoked.contains(old) {
                revoked.push(old.clone());
            }
        }
        revoked.retain(|token| !per_host.iter().any(|(_, new)| new == token));
        Self { shared: self.shared.clone(), per_host, revoked }
    }

    /// Checks an `Authorization` header value. Every known token is compared, each in constant
    /// time, so the time taken says nothing about which (if any) matched.
    pub fn check(&self, authorization: Option<&str>) -> AgentCheck {
        let Some(token) = authorization.and_then(bearer).map(str::as_bytes) else {
            return AgentCheck::Rejected;
        };
        let mut found = None;
        if self.shared.as_deref().is_some_and(|s| bool::from(token.ct_eq(s))) {
            found = Some(AgentCredential::Shared);
        }
        for (host, secret) in &self.per_host {
            if bool::from(token.ct_eq(secret)) && found.is_none() {
                found = Some(AgentCredential::Host(host.clone()));
            }
        }
        let revoked = self.revoked.iter().fold(false, |any, r| any | bool::from(token.ct_eq(r)));
        match found {
            Some(credential) => AgentCheck::Accepted(credential),
            None if revoked => AgentCheck::Revoked,
            None => AgentCheck::Rejected,
        }
    }

    /// Whether `host` has a per-host token, which then is the only token that may claim it: the
    /// shared token would let any agent impersonate it.
    pub fn has_own_token(&self, host: &str) -> bool {
        self.per_host.iter().any(|(h, _)| h == host)
    }

    /// Whether a connection admitted with `credential` may stay under this (reloaded) set.
    pub fn still_valid(&self, credential: &AgentCredential, previous: &AgentAuth) -> bool {
        match credential {
            AgentCredential::Shared => self.shared.is_some(),
            AgentCredential::InProcess => true,
            AgentCredential::Host(host) => {
                let token = |auth: &AgentAuth| {
                    auth.per_host.iter().find(|(h, _)| h == host).map(|(_, t)| t.clone())
                };
                token(self).is_some() && token(self) == token(previous)
            }
        }
    }
}

/// Reads a per-host tokens file: one `HOST_ID TOKEN` per line; blank lines and lines starting
/// with `#` are ignored. Errors name the line.
pub fn read_agent_tokens(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut tokens = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(host), Some(token), None) = (words.next(), words.next(), words.next()) else {
            anyhow::bail!("{}:{}: expected `HOST_ID TOKEN`", path.display(), number + 1);
        };
        anyhow::ensure!(
            !tokens.iter().any(|(h, _): &(String, String)| h == host),
            "{}:{}: host {host} is listed twice",
            path.display(),
            number + 1
        );
        tokens.push((host.to_owned(), token.to_owned()));
    }
    Ok(tokens)
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
            return Ok(ResolvedToken { token: token.clone(), path: None, generated: false });
        }
        TokenSource::File(path) => path,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim().to_owned();
            anyhow::ensure!(!token.is_empty(), "the agent token file {} is empty", path.display());
            let mode = std::fs::metadata(path)?.permissions().mode();
            if mode & 0o077 != 0 {
                log::warn!(
                    "the agent token file {} is readable by other users (mode {:o}); chmod 600 it",
                    path.display(),
                    mode & 0o777
                );
            }
            Ok(ResolvedToken { token, path: Some(path.clone()), generated: false })
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let token = generate_token()?;
            write_secret_file(path, &token)?;
            Ok(ResolvedToken { token, path: Some(path.clone()), generated: true })
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
        let auth = AgentAuth::new(Some("abc123".into()), vec![("web".into(), "w-token".into())]);
        let shared = AgentCheck::Accepted(AgentCredential::Shared);
        assert_eq!(auth.check(Some("Bearer abc123")), shared);
        assert_eq!(auth.check(Some("bearer  abc123 ")), shared);
        assert_eq!(
            auth.check(Some("Bearer w-token")),
            AgentCheck::Accepted(AgentCredential::Host("web".into()))
        );
        for bad in [
            Some("Bearer abc124"),
            Some("Bearer abc12"),
            Some("Basic abc123"),
            Some("abc123"),
            None,
        ] {
            assert_eq!(auth.check(bad), AgentCheck::Rejected, "{bad:?}");
        }
    }

    #[test]
    fn removed_per_host_tokens_are_revoked_until_they_come_back() {
        let before =
            AgentAuth::new(None, vec![("a".into(), "ta".into()), ("b".into(), "tb".into())]);
        let after = before.reloaded(vec![("a".into(), "ta".into())]);
        assert_eq!(after.check(Some("Bearer tb")), AgentCheck::Revoked);
        assert_eq!(
            after.check(Some("Bearer ta")),
            AgentCheck::Accepted(AgentCredential::Host("a".into()))
        );
        assert!(after.still_valid(&AgentCredential::Host("a".into()), &before));
        assert!(!after.still_valid(&AgentCredential::Host("b".into()), &before));
        assert!(
            !after.still_valid(&AgentCredential::Shared, &before),
            "no shared token configured"
        );
        let again = after.reloaded(vec![("b".into(), "tb".into())]);
        assert_eq!(
            again.check(Some("Bearer tb")),
            AgentCheck::Accepted(AgentCredential::Host("b".into()))
        );
        assert_eq!(again.check(Some("Bearer ta")), AgentCheck::Revoked);
    }

    #[test]
    fn tokens_files_are_parsed_strictly() {
        let dir = std::env::temp_dir().join(format!("hw-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens");
        std::fs::write(&path, "# comment\n\nweb-1 t1\n  db-2   t2  \n").unwrap();
        assert_eq!(
            read_agent_tokens(&path).unwrap(),
            vec![("web-1".into(), "t1".into()), ("db-2".into(), "t2".into())]
        );
        std::fs::write(&path, "web-1 t1 extra\n").unwrap();
        assert!(read_agent_tokens(&path).unwrap_err().to_string().contains(":1:"));
        std::fs::write(&path, "web-1 t1\nweb-1 t2\n").unwrap();
        assert!(read_agent_tokens(&path).unwrap_err().to_string().contains("twice"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_missing_token_file_is_generated_private_and_then_reused() {
        let dir = std::env::temp_dir().join(format!("hw-auth-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir); // Leftover of an earlier run, if any.
        let path = dir.join("hostwatch.db.agent-token");
        let first = resolve_agent_token(&TokenSource::File(path.clone())).unwrap();
        assert!(first.generated);
        assert_eq!(first.token.len(), 64);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let second = resolve_agent_token(&TokenSource::File(path.clone())).unwrap();
        assert!(!second.generated);
        assert_eq!(second.token, first.token);
        std::fs::write(&path, "\n").unwrap();
        assert!(resolve_agent_token(&TokenSource::File(path)).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
