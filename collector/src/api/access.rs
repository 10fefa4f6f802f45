//! Who may read and write: the viewer and admin tokens for the page, the API and `/live`, login
//! sessions (a random id signed with the viewer token) and their throttling, and the origins
//! allowed to open `/live`. Every secret is compared in constant time and never logged.

use subtle::ConstantTimeEq;

use crate::ingest::auth::bearer;

/// Who may read and who may write through the HTTP API and `/live`, and from which pages.
#[derive(Default)]
pub struct Access {
    viewer: Option<Vec<u8>>,
    admin: Option<Vec<u8>>,
    allowed_origins: Vec<String>,
    page: Option<PageOrigin>,
    logins: LoginThrottle,
}

/// Where the collector's own page is served from, for `/live`'s same-origin check.
struct PageOrigin {
    http_port: u16,
    names: Vec<String>,
}

/// The login cookie's name.
pub const SESSION_COOKIE: &str = "hostwatch_session";

/// How long a login session lasts: 30 days, the cookie's `Max-Age`.
pub const SESSION_SECONDS: u64 = 30 * 24 * 3600;

/// Failed logins one address may make per [`LOGIN_WINDOW`] before it must wait.
const LOGIN_FAILURES: u32 = 5;
/// The window of [`LOGIN_FAILURES`].
const LOGIN_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);
/// Addresses whose failures are remembered, at most; past it the oldest windows are forgotten.
const LOGIN_ADDRESSES: usize = 4096;

/// Failed logins per address: at most [`LOGIN_FAILURES`] per [`LOGIN_WINDOW`], so guessing the
/// viewer token online takes forever, while one person mistyping waits a minute at worst.
#[derive(Default)]
struct LoginThrottle {
    failures:
        std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, (std::time::Instant, u32)>>,
}

impl LoginThrottle {
    fn failed(&self, ip: std::net::IpAddr, now: std::time::Instant) -> Option<u64> {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= LOGIN_ADDRESSES && !failures.contains_key(&ip) {
            failures.retain(|_, (start, _)| now.duration_since(*start) < LOGIN_WINDOW);
            if failures.len() >= LOGIN_ADDRESSES {
                // Still full of fresh windows: forget the oldest one to stay bounded.
                if let Some(oldest) = failures.iter().min_by_key(|(_, (s, _))| *s).map(|(k, _)| *k)
                {
                    failures.remove(&oldest);
                }
            }
        }
        let entry = failures.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= LOGIN_WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
        drop(failures);
        self.blocked(ip, now)
    }

    fn blocked(&self, ip: std::net::IpAddr, now: std::time::Instant) -> Option<u64> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let (start, count) = *failures.get(&ip)?;
        let left = LOGIN_WINDOW.checked_sub(now.duration_since(start)).filter(|d| !d.is_zero())?;
        (count >= LOGIN_FAILURES).then(|| left.as_secs().max(1))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn session_mac(key: &[u8], body: &str) -> ring::hmac::Tag {
    ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), body.as_bytes())
}

/// Whether `cookie` is a session [`Access::new_session`] made with this viewer token and not
/// expired at `now_seconds`.
fn session_valid(viewer: &[u8], cookie: &str, now_seconds: u64) -> bool {
    let Some((body, mac)) = cookie.rsplit_once('.') else { return false };
    let Some((_, expires)) = body.split_once('.') else { return false };
    let fresh = expires.parse::<u64>().is_ok_and(|e| e > now_seconds);
    let expected = hex(session_mac(viewer, body).as_ref());
    fresh & bool::from(expected.as_bytes().ct_eq(mac.as_bytes()))
}

impl Access {
    /// Viewers need `viewer` (if set); writes need `admin` (if unset, writes are disabled).
    pub fn new(viewer: Option<String>, admin: Option<String>) -> Self {
        Self {
            viewer: viewer.map(String::into_bytes),
            admin: admin.map(String::into_bytes),
            allowed_origins: Vec::new(),
            page: None,
            logins: LoginThrottle::default(),
        }
    }

    /// Only pages from these origins may open `/live` (browsers send `Origin`; other clients
    /// do not and are not affected). Empty: the collector's own page ([`Access::with_page`]).
    pub fn with_allowed_origins(mut self, origins: Vec<String>) -> Self {
        self.allowed_origins =
            origins.into_iter().map(|o| o.trim_end_matches('/').to_ascii_lowercase()).collect();
        self
    }

    /// Whether a WebSocket upgrade with this `Origin` (and `Host`) may proceed. This stops other
    /// web sites from opening `/live` with a viewer's cookie (cross-site WebSocket hijacking).
    pub fn origin_allowed(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else { return true };
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        if !self.allowed_origins.is_empty() {
            return self.allowed_origins.contains(&origin);
        }
        let (scheme, origin_host) = origin.split_once("://").unwrap_or(("", ""));
        let Some(host) = host.map(str::to_ascii_lowercase) else { return false };
        let same_name = hostname(origin_host) == hostname(&host) && !origin_host.is_empty();
        let Some(page) = &self.page else { return same_name };
        // Same origin as the collector's own page, under a name it is known by. A DNS name an
        // attacker points at this address ("DNS rebinding": Host and Origin both theirs) is no
        // such name, and neither is another port of this host (another web server there).
        let name = hostname(origin_host);
        let known = name.parse::<std::net::IpAddr>().is_ok()
            || name == "localhost"
            || page.names.iter().any(|n| n == name);
        let default_port = if scheme == "https" { 443 } else { 80 };
        let origin_port = port(origin_host).unwrap_or(default_port);
        let same_port = origin_port == page.http_port || Some(origin_port) == port(&host);
        same_name && known && same_port
    }

    /// Checks `/live`'s `Origin` strictly: the page must come from `http_port` (or the port of
    /// `/live` itself) under an IP address, `localhost` or one of `names` (this host's names).
    /// Without this, any host name and any port of it are taken (unit tests only).
    pub fn with_page(mut self, http_port: u16, names: Vec<String>) -> Self {
        let names = names.into_iter().map(|n| n.to_ascii_lowercase()).collect();
        self.page = Some(PageOrigin { http_port, names });
        self
    }

    /// Whether the page and API require a viewer token.
    pub fn viewer_required(&self) -> bool {
        self.viewer.is_some()
    }

    /// Whether writes are possible at all.
    pub fn admin_configured(&self) -> bool {
        self.admin.is_some()
    }

    /// Whether a request may read: no viewer token is configured, or it presents the viewer or
    /// admin token as a bearer token, or a session from `/login` in the login cookie (or, as
    /// cookies set by earlier releases did, the viewer token itself).
    pub fn may_view(&self, authorization: Option<&str>, cookie: Option<&str>) -> bool {
        let Some(viewer) = &self.viewer else {
            return true;
        };
        let bearer_token = authorization.and_then(bearer).map(str::as_bytes);
        let cookie = cookie.and_then(|c| cookie_value(c, SESSION_COOKIE));
        let matches = |token: Option<&[u8]>, secret: Option<&Vec<u8>>| match (token, secret) {
            (Some(t), Some(s)) => bool::from(t.ct_eq(s)),
            _ => false,
        };
        let session = cookie.is_some_and(|c| session_valid(viewer, c, crate::now_ms() / 1000));
        matches(bearer_token, Some(viewer))
            | matches(bearer_token, self.admin.as_ref())
            | matches(cookie.map(str::as_bytes), Some(viewer))
            | session
    }

    /// A new login session for the cookie, valid for [`SESSION_SECONDS`]: a random id, its
    /// expiry and a MAC keyed with the viewer token. The cookie never holds the token, survives
    /// a collector restart, and every session ends when the viewer token changes. `None` when
    /// no viewer token is configured.
    pub fn new_session(&self) -> anyhow::Result<Option<String>> {
        let Some(viewer) = &self.viewer else { return Ok(None) };
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|e| anyhow::anyhow!("cannot get random bytes: {e}"))?;
        let expires = crate::now_ms() / 1000 + SESSION_SECONDS;
        let body = format!("{}.{expires}", hex(&id));
        Ok(Some(format!("{body}.{}", hex(session_mac(viewer, &body).as_ref()))))
    }

    /// Counts a failed login from `ip`; `Some(seconds)` to wait when it is over the limit.
    pub fn login_failed(&self, ip: std::net::IpAddr) -> Option<u64> {
        self.logins.failed(ip, std::time::Instant::now())
    }

    /// Whether `ip` must wait before trying to log in again, and how many seconds.
    pub fn login_blocked(&self, ip: std::net::IpAddr) -> Option<u64> {
        self.logins.blocked(ip, std::time::Instant::now())
    }

    /// Whether a request may write: it presents the admin token as a bearer token.
    pub fn may_write(&self, authorization: Option<&str>) -> bool {
        match (&self.admin, authorization.and_then(bearer)) {
            (Some(admin), Some(token)) => bool::from(token.as_bytes().ct_eq(admin)),
            _ => false,
        }
    }

    /// Whether `token` is the viewer token (the login form).
    pub fn is_viewer_token(&self, token: &str) -> bool {
        self.viewer.as_deref().is_some_and(|v| bool::from(token.as_bytes().ct_eq(v)))
    }
}

/// The port of `host:port` or `[v6]:port`, if it has one.
fn port(authority: &str) -> Option<u16> {
    let rest = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map(|(_, rest)| rest)?,
        None => authority,
    };
    rest.rsplit_once(':').and_then(|(_, port)| port.parse().ok())
}

/// The host part of `host[:port]` or `[v6]:port`.
fn hostname(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.rsplit_once(':').map_or(authority, |(host, _)| host)
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let same_host = Access::new(None, None);
        assert!(
            same_host.origin_allowed(None, Some("h:8701")),
            "non-browser clients send no Origin"
        );
        assert!(same_host.origin_allowed(Some("http://h:8700"), Some("h:8701")));
        assert!(same_host.origin_allowed(Some("https://[::1]:8700"), Some("[::1]:8701")));
        assert!(!same_host.origin_allowed(Some("https://evil.example"), Some("h:8701")));
        assert!(!same_host.origin_allowed(Some("null"), Some("h:8701")));
        let listed =
            Access::new(None, None).with_allowed_origins(vec!["https://dash.example/".into()]);
        assert!(listed.origin_allowed(Some("https://DASH.example"), Some("collector:8701")));
        assert!(!listed.origin_allowed(Some("http://collector:8700"), Some("collector:8701")));
    }

    #[test]
    fn live_origins_are_the_collectors_own_page() {
        let page = Access::new(None, None).with_page(8700, vec!["Mon-1".into()]);
        // The page on the http port, by IP, localhost or this host's name.
        assert!(page.origin_allowed(Some("http://10.0.0.5:8700"), Some("10.0.0.5:8701")));
        assert!(page.origin_allowed(Some("http://localhost:8700"), Some("localhost:8701")));
        assert!(page.origin_allowed(Some("https://[::1]:8700"), Some("[::1]:8701")));
        assert!(page.origin_allowed(Some("http://mon-1:8700"), Some("mon-1:8701")));
        // One port for both (behind a proxy): the origin's default port is the Host's.
        assert!(page.origin_allowed(Some("http://10.0.0.5"), Some("10.0.0.5:80")));
        // DNS rebinding: a name the attacker controls, in both headers.
        assert!(!page.origin_allowed(Some("http://evil.example:8700"), Some("evil.example:8701")));
        assert!(!page.origin_allowed(Some("http://evil.example"), Some("evil.example")));
        // Another web server on this host.
        assert!(!page.origin_allowed(Some("http://10.0.0.5:8080"), Some("10.0.0.5:8701")));
        assert!(!page.origin_allowed(Some("http://10.0.0.6:8700"), Some("10.0.0.5:8701")));
        assert!(page.origin_allowed(None, Some("evil.example")), "non-browser clients");
    }

    #[test]
    fn viewers_and_admins() {
        let open = Access::new(None, None);
        assert!(open.may_view(None, None));
        assert!(!open.may_write(Some("Bearer anything")));
        let locked = Access::new(Some("view".into()), Some("admin".into()));
        assert!(!locked.may_view(None, None));
        assert!(!locked.may_view(Some("Bearer nope"), Some("hostwatch_session=nope")));
        assert!(locked.may_view(Some("Bearer view"), None));
        assert!(locked.may_view(Some("Bearer admin"), None));
        assert!(locked.may_view(None, Some("theme=dark; hostwatch_session=view")));
        assert!(locked.may_write(Some("Bearer admin")));
        assert!(!locked.may_write(Some("Bearer view")));
    }

    #[test]
    fn login_sessions_hold_no_token_expire_and_end_with_the_token() {
        let locked = Access::new(Some("view-token".into()), None);
        let session = locked.new_session().unwrap().unwrap();
        assert!(!session.contains("view-token"));
        let cookie = format!("{SESSION_COOKIE}={session}");
        assert!(locked.may_view(None, Some(&cookie)));
        let other = locked.new_session().unwrap().unwrap();
        assert_ne!(session, other, "every login gets its own id");
        let changed = Access::new(Some("new-token".into()), None);
        assert!(!changed.may_view(None, Some(&cookie)), "a new viewer token ends every session");
        let (body, _) = session.rsplit_once('.').unwrap();
        let forged = format!("{SESSION_COOKIE}={body}.{}", "0".repeat(64));
        assert!(!locked.may_view(None, Some(&forged)));
        let expired = body.split_once('.').map(|(id, _)| format!("{id}.1")).unwrap();
        let expired = format!("{expired}.{}", hex(session_mac(b"view-token", &expired).as_ref()));
        assert!(!locked.may_view(None, Some(&format!("{SESSION_COOKIE}={expired}"))));
        assert!(Access::new(None, None).new_session().unwrap().is_none());
    }

    #[test]
    fn failed_logins_are_throttled_per_address() {
        let throttle = LoginThrottle::default();
        let now = std::time::Instant::now();
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..LOGIN_FAILURES - 1 {
            assert_eq!(throttle.failed(a, now), None);
        }
        assert_eq!(throttle.failed(a, now), Some(60));
        assert_eq!(throttle.blocked(a, now + std::time::Duration::from_secs(30)), Some(30));
        assert_eq!(throttle.blocked(b, now), None, "another address is not affected");
        assert_eq!(throttle.blocked(a, now + LOGIN_WINDOW), None, "the window passes");
    }
}
