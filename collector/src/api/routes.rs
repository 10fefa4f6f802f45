//! Routing: exact path matching, one function per endpoint. Each handler is a function of the
//! request and the collector's state (asked of the hub or read from the database) to a response.

use serde_json::{Value, json};

use crate::Ctx;
use crate::api::assets;
use crate::api::history::{Points, Selection};
use crate::fanout::events::Filter;
use crate::fanout::hub::{self, SubscribeRequest};
use crate::fanout::subscribe::{LiveStream, SubscriberSlot};
use crate::net::http::server::{Request, Response};
use crate::storage::query::Rollup;
#[cfg(test)]
use crate::storage::query::{Bucket, METRICS};

/// A response whose stream, if any, is an SSE subscription.
pub type Reply = Response<LiveStream>;

/// The most raw points one history request may return (5.5 h at 1 s); longer ranges need a
/// step. Bounds the memory one request can take.
pub const MAX_RAW_POINTS: usize = 20_000;
/// The most buckets one downsampled history request may return.
pub const MAX_BUCKETS: u64 = 10_000;

/// Headers on every response.
pub fn common_headers() -> [(&'static str, String); 4] {
    [
        ("X-Content-Type-Options", "nosniff".into()),
        ("Referrer-Policy", "no-referrer".into()),
        ("X-Frame-Options", "DENY".into()),
        (
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'; \
             frame-ancestors 'none'"
                .into(),
        ),
    ]
}

/// Answers one request.
pub async fn handle(request: &Request, ctx: &Ctx) -> Reply {
    let path = request.path.as_str();
    let method = request.method.as_str();
    let read = method == "GET" || method == "HEAD";
    let viewer = ctx.access.may_view(request.header("authorization"), request.header("cookie"));

    // Open to everyone: probes, the login form, and the page's code and style (no data in them).
    match path {
        "/healthz" if read => {
            return Response::bytes(200, "text/plain; charset=utf-8", &b"ok\n"[..]);
        }
        "/readyz" if read => return readyz(ctx).await,
        "/healthz" | "/readyz" => return not_allowed("GET, HEAD"),
        "/login" => return login(request, ctx),
        "/logout" => return logout(request, ctx),
        "/" if !viewer && read => return login_page(200, None),
        _ => {}
    }
    if let Some(asset) = assets::find(path) {
        return if read { asset_response(request, asset) } else { not_allowed("GET, HEAD") };
    }
    if !viewer {
        return Response::error(
            401,
            "a viewer token is required (Authorization: Bearer, or log in at /)",
        )
        .with_header("WWW-Authenticate", "Bearer realm=\"hostwatch\"")
        .with_header("Cache-Control", "no-store");
    }
    let response = match path {
        "/api/hosts" if read => hosts(ctx).await,
        "/api/stats" if read => stats(ctx).await,
        "/api/clients" if read => clients(ctx).await,
        "/api/alerts" if read => crate::api::alerts::alerts(request, ctx).await,
        "/api/activity" if read => activity(request, ctx).await,
        "/api/series" if read => Response::json(200, &crate::catalog::describe()),
        "/metrics" if read => match request.query_param("host") {
            Some(id) => host_metrics(ctx, id).await,
            None => metrics(ctx).await,
        },
        "/api/prometheus/targets" if read => prometheus_targets(ctx).await,
        "/events" if method == "GET" => events(request, ctx),
        "/api/broadcast" if method == "POST" => broadcast(request, ctx).await,
        "/api/broadcast" => not_allowed("POST"),
        "/api/hosts"
        | "/api/stats"
        | "/api/clients"
        | "/api/alerts"
        | "/api/activity"
        | "/api/series"
        | "/metrics"
        | "/api/prometheus/targets" => not_allowed("GET, HEAD"),
        "/events" => not_allowed("GET"),
        _ if crate::api::alerts::is_silences(path) => {
            crate::api::alerts::silences(request, ctx).await
        }
        _ if path.starts_with("/metrics/hosts/") => match metrics_host_route(path) {
            Some(_) if !read => not_allowed("GET, HEAD"),
            Some(id) => host_metrics(ctx, id).await,
            None => Response::error(404, format!("no such path: {path}")),
        },
        _ => match host_route(path) {
            Some((id, HostRoute::Host)) if method == "DELETE" => {
                remove_host(request, ctx, id).await
            }
            Some((_, HostRoute::Host)) if !read => not_allowed("GET, HEAD, DELETE"),
            Some((_, HostRoute::History)) if !read => not_allowed("GET, HEAD"),
            Some((id, HostRoute::Host)) => host(ctx, id).await,
            Some((id, HostRoute::History)) => history(request, ctx, id).await,
            None => Response::error(404, format!("no such path: {path}")),
        },
    };
    // Only where the handler did not choose one: a header sent twice is a malformed answer to
    // caches and strict clients (`/events` sets its own).
    if response.headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("cache-control")) {
        response
    } else {
        response.with_header("Cache-Control", "no-store")
    }
}

/// The login form, with an optional error.
fn login_page(status: u16, error: Option<&str>) -> Reply {
    let error = error
        .map(|e| format!("<p class=\"login-error\" role=\"alert\">{e}</p>"))
        .unwrap_or_default();
    let html = LOGIN_PAGE.replace("<!--ERROR-->", &error);
    Response::bytes(status, "text/html; charset=utf-8", html.into_bytes())
        .with_header("Cache-Control", "no-store")
}

const LOGIN_PAGE: &str = include_str!("../../web/login.html");

/// `POST /login` with `token=…` (a form): sets the session cookie and goes to the page.
fn login(request: &Request, ctx: &Ctx) -> Reply {
    match request.method.as_str() {
        "GET" | "HEAD" => return login_page(200, None),
        "POST" => {}
        _ => return not_allowed("GET, POST"),
    }
    if !ctx.access.viewer_required() {
        return redirect("./", None);
    }
    let ip = request.remote.ip();
    if let Some(wait) = ctx.access.login_blocked(ip) {
        return too_many_logins(wait);
    }
    let token = form_urlencoded::parse(&request.body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned());
    match token {
        Some(token) if ctx.access.is_viewer_token(token.trim()) => {
            let session = match ctx.access.new_session() {
                Ok(Some(session)) => session,
                Ok(None) => return redirect("./", None),
                Err(err) => {
                    log::error!("http: cannot make a login session: {err:#}");
                    return Response::error(500, "cannot make a login session");
                }
            };
            let secure = if secure_origin(request, ctx) { "; Secure" } else { "" };
            let cookie = format!(
                "{}={session}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
                crate::api::access::SESSION_COOKIE,
                crate::api::access::SESSION_SECONDS,
            );
            redirect("./", Some(cookie))
        }
        _ => {
            static LOG: crate::net::budget::RefusalLog = crate::net::budget::RefusalLog::new();
            LOG.log(|count| {
                log::warn!("http: {}: failed login ({count} since the last line)", request.remote)
            });
            match ctx.access.login_failed(ip) {
                Some(wait) => too_many_logins(wait),
                None => login_page(401, Some("That token is not valid.")),
            }
        }
    }
}

/// 429 for an address that failed to log in too often.
fn too_many_logins(wait_seconds: u64) -> Reply {
    login_page(429, Some("Too many failed logins from this address; wait a minute."))
        .with_header("Retry-After", wait_seconds.to_string())
}

/// `POST /logout`: clears the session cookie.
fn logout(request: &Request, ctx: &Ctx) -> Reply {
    if !matches!(request.method.as_str(), "GET" | "POST") {
        return not_allowed("GET, POST");
    }
    let secure = if secure_origin(request, ctx) { "; Secure" } else { "" };
    let cookie = format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}",
        crate::api::access::SESSION_COOKIE
    );
    redirect("./", Some(cookie))
}

/// Whether the browser reached us over HTTPS: our own TLS, or a reverse proxy that ended TLS and
/// says so. Only decides the cookie's `Secure` flag, so trusting the header costs nothing.
fn secure_origin(request: &Request, ctx: &Ctx) -> bool {
    ctx.tls.is_some()
        || request.header("x-forwarded-proto").is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

fn redirect(to: &str, cookie: Option<String>) -> Reply {
    let mut response = Response::bytes(303, "text/plain; charset=utf-8", &b""[..])
        .with_header("Location", to)
        .with_header("Cache-Control", "no-store");
    if let Some(cookie) = cookie {
        response = response.with_header("Set-Cookie", cookie);
    }
    response
}

/// `GET /readyz`: 200 while the storage commits and the hub answers, each within 2 s; 503 with
/// the reason while the storage's last write failed (a full disk: nothing is acknowledged).
async fn readyz(ctx: &Ctx) -> Reply {
    let health = ctx.storage.health().view();
    if health.failing {
        let reason = format!("storage: {}", health.reason.unwrap_or_default());
        return Response::json(503, &json!({ "ready": false, "reason": reason }));
    }
    let probe = async {
        ctx.storage.ping().await.map_err(|e| format!("storage: {e}"))?;
        hub::ask(&ctx.hub, |reply| hub::Query::Stats { reply })
            .await
            .ok_or("hub: shutting down")?;
        Ok::<(), String>(())
    };
    let probe = agent::runtime::within(std::time::Duration::from_secs(2), probe).await;
    let probe = probe.unwrap_or_else(|| Err("storage or hub did not answer within 2 s".to_owned()));
    // A write that failed while the probe waited explains the failure better than the probe.
    let health = ctx.storage.health().view();
    let probe = match (probe, health.reason) {
        (Err(_), Some(reason)) if health.failing => Err(format!("storage: {reason}")),
        (probe, _) => probe,
    };
    match probe {
        Ok(()) => match &ctx.replica {
            // Still ready without Redis: ingest, storage and this collector's own fan-out go on.
            Some(replica) => {
                let status = replica.status();
                let note = if status.up {
                    "replicating with the other collectors"
                } else {
                    "Redis unreachable: working alone (ingest, storage and live streams go on); \
                     catching up when it returns"
                };
                Response::json(
                    200,
                    &json!({ "ready": true, "redis_up": status.up, "redis": status, "redis_note": note }),
                )
            }
            None => Response::json(200, &json!({ "ready": true })),
        },
        Err(reason) => Response::json(503, &json!({ "ready": false, "reason": reason })),
    }
}

/// `POST /api/broadcast` with `{"message": "…"}` and the admin token: a `notification` event to
/// every subscriber and the activity feed.
async fn broadcast(request: &Request, ctx: &Ctx) -> Reply {
    if let Some(refusal) = admin_refusal(request, ctx, "broadcasts") {
        return refusal;
    }
    let message = match serde_json::from_slice::<Value>(&request.body) {
        Ok(body) => match body.get("message").and_then(Value::as_str).map(str::trim) {
            Some(message) if crate::untrusted::has_control(message) => {
                return Response::error(
                    400,
                    "message has control characters (CR, LF, ESC, NUL…); send plain text",
                );
            }
            Some(message)
                if !message.is_empty() && message.chars().count() <= MAX_BROADCAST_CHARS =>
            {
                message.to_owned()
            }
            Some(message) if !message.is_empty() => {
                return Response::error(
                    400,
                    format!("message is over {MAX_BROADCAST_CHARS} characters"),
                );
            }
            _ => return Response::error(400, "body must be {\"message\": \"non-empty text\"}"),
        },
        Err(err) => return Response::error(400, format!("body is not JSON: {err}")),
    };
    log::info!("broadcast from {}: {}", request.remote, crate::untrusted::escaped(&message));
    let from = request.remote.to_string();
    let event = hub::Event::Broadcast { message: message.clone(), from: from.clone() };
    if ctx.hub.send(event).await.is_err() {
        return Response::error(503, "shutting down");
    }
    match &ctx.replica {
        // With --redis the other collectors' viewers get it too, through the stream.
        Some(replica) => {
            let replicated = replica.broadcast(&message, &from).await;
            Response::json(202, &json!({ "ok": true, "replicated": replicated }))
        }
        None => Response::json(202, &json!({ "ok": true })),
    }
}

/// The refusal of a write without the admin token: 403 when none is configured (`what` are
/// disabled), 401 without it or with another.
fn admin_refusal(request: &Request, ctx: &Ctx, what: &str) -> Option<Reply> {
    if !ctx.access.admin_configured() {
        return Some(Response::error(
            403,
            format!("{what} are disabled: start the collector with --admin-token-file"),
        ));
    }
    if !ctx.access.may_write(request.header("authorization")) {
        return Some(
            Response::error(401, "the admin token is required (Authorization: Bearer)")
                .with_header("WWW-Authenticate", "Bearer realm=\"hostwatch-admin\""),
        );
    }
    None
}

/// `DELETE /api/hosts/{id}` with the admin token: removes an offline host. It is gone from the
/// API, `/metrics` and history at once (202), a `host_removed` event goes out, and the storage
/// deletes its rows in small steps.
async fn remove_host(request: &Request, ctx: &Ctx, id: String) -> Reply {
    if let Some(refusal) = admin_refusal(request, ctx, "host removals") {
        return refusal;
    }
    let asked = hub::ask(&ctx.hub, |reply| hub::Event::RemoveHost { id: id.clone(), reply });
    let removed = match asked.await {
        Some(Ok(removed)) => Unremoved { removed: Some(removed), hub: ctx.hub.clone() },
        Some(Err(hub::RemoveRefusal::Unknown)) => {
            return Response::error(404, format!("unknown host {id:?}"));
        }
        Some(Err(hub::RemoveRefusal::Connected(status))) => {
            return Response::error(
                409,
                format!(
                    "host {id:?} is {status}: only an offline host can be removed; stop its agent first"
                ),
            );
        }
        None => return Response::error(503, "shutting down"),
    };
    let activity = crate::activity::Record::now(
        Some(&id),
        crate::activity::Activity::HostRemoved { hostname: removed.hostname() },
    );
    match ctx.storage.remove_host(id.clone(), activity).await {
        Ok(_) => {
            removed.done();
            log::info!("http: {}: removed host {}", request.remote, crate::untrusted::escaped(&id));
            Response::json(202, &json!({ "ok": true, "host": id }))
        }
        // The storage logs its failures; the hub knows the host again (`Unremoved::drop`).
        Err(err) => Response::error(503, format!("cannot remove the host now: {err}")),
    }
}

/// A host the hub forgot for its removal: given back to the hub unless the storage committed
/// the removal, also when the request is dropped halfway.
struct Unremoved {
    removed: Option<hub::RemovedHost>,
    hub: async_channel::Sender<hub::Event>,
}

impl Unremoved {
    fn hostname(&self) -> String {
        self.removed.as_ref().map(|r| r.hostname.clone()).unwrap_or_default()
    }

    /// The storage committed the removal.
    fn done(mut self) {
        self.removed = None;
    }
}

impl Drop for Unremoved {
    fn drop(&mut self) {
        if let Some(removed) = self.removed.take() {
            // A hub that is gone (shutdown) needs nothing back.
            let _ = self.hub.try_send(hub::Event::RestoreHost(removed));
        }
    }
}

/// `GET /api/activity?before=EID&limit=N[&types=…][&host=…]`: the activity log, newest first.
async fn activity(request: &Request, ctx: &Ctx) -> Reply {
    let query = match parse_activity_query(request) {
        Ok(query) => query,
        Err(message) => return Response::error(400, message),
    };
    let result = ctx
        .readers
        .run(move |reader| {
            let (events, more) =
                reader.activity_before(query.before, query.limit, &query.filter)?;
            let mut body = String::from("{\"events\":[");
            for (i, event) in events.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                body.push_str(event.json());
            }
            body.push_str(if more { "],\"more\":true}" } else { "],\"more\":false}" });
            Ok(body)
        })
        .await;
    match result {
        Ok(body) => Response::bytes(200, "application/json", body.into_bytes()),
        Err(err) => {
            log::error!("activity log: {err:#}");
            Response::error(500, "cannot read the activity log")
        }
    }
}

/// Events `GET /api/activity` returns when not told, and at most.
pub const ACTIVITY_LIMIT: (usize, usize) = (50, 500);

/// Most values of one `types=` or `host=` list of `GET /api/activity`.
const ACTIVITY_FILTER_VALUES: usize = 256;

/// What `GET /api/activity` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityQuery {
    /// Only events older than this id; from the newest when `None`.
    pub before: Option<u64>,
    /// Most events to return.
    pub limit: usize,
    /// `types=` and `host=`, as live streams read them.
    pub filter: Filter,
}

/// Reads `before`, `limit`, `types` and `host` of `GET /api/activity`.
pub fn parse_activity_query(request: &Request) -> Result<ActivityQuery, String> {
    let before = crate::fanout::events::parse_event_id(request.query_param("before").as_deref())
        .map_err(|_| "before must be an event id (a whole number)".to_owned())?;
    let (default, max) = ACTIVITY_LIMIT;
    let limit = match request.query_param("limit") {
        None => default,
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => return Err(format!("limit must be a whole number from 1 to {max}, not {v:?}")),
        },
    };
    let filter = Filter::from_query(&request.query_pairs());
    for (name, list) in [("types", &filter.kinds), ("host", &filter.hosts)] {
        if list.as_ref().is_some_and(|l| l.len() > ACTIVITY_FILTER_VALUES) {
            return Err(format!("{name} lists at most {ACTIVITY_FILTER_VALUES} values"));
        }
    }
    Ok(ActivityQuery { before, limit, filter })
}

/// The longest broadcast message.
pub const MAX_BROADCAST_CHARS: usize = 500;

/// `GET /metrics`: Prometheus text exposition.
async fn metrics(ctx: &Ctx) -> Reply {
    let Some(view) = hub::ask(&ctx.hub, |reply| hub::Query::Metrics { reply }).await else {
        return Response::error(503, "shutting down");
    };
    let figures = crate::api::metrics::CollectorFigures {
        database_bytes: Some(crate::storage::query::database_bytes(ctx.storage.path())),
        ingest_bytes_total: ctx.metrics.ingest_bytes_total(),
        subscribers: ctx.subscribers.load(std::sync::atomic::Ordering::Relaxed),
        storage: ctx.storage.health().view(),
        writer: ctx.storage.timings().view(),
        notify: ctx.notify_stats.clone(),
        redis: ctx.replica.as_ref().map(|r| r.status()),
    };
    let body = crate::api::metrics::render(&view, &figures);
    Response::bytes(200, "text/plain; version=0.0.4; charset=utf-8", body.into_bytes())
}

/// `GET /metrics?host=ID` and `/metrics/hosts/ID`: one host's series, node_exporter style, for
/// Prometheus's multi-target exporter pattern.
async fn host_metrics(ctx: &Ctx, id: String) -> Reply {
    let asked = hub::ask(&ctx.hub, |reply| hub::Query::HostMetrics { id: id.clone(), reply });
    match asked.await {
        Some(Some(host)) => {
            let body = crate::api::metrics::render_host(&host);
            Response::bytes(200, "text/plain; version=0.0.4; charset=utf-8", body.into_bytes())
        }
        Some(None) => Response::error(404, format!("unknown host {id:?}")),
        None => Response::error(503, "shutting down"),
    }
}

/// `GET /api/prometheus/targets`: every known host in Prometheus's HTTP service-discovery
/// format, one target group per host whose target is the host id (to become `?host=ID` by
/// relabelling, as with the blackbox exporter), with its name and status as meta labels.
async fn prometheus_targets(ctx: &Ctx) -> Reply {
    let Some(hosts) = hub::ask(&ctx.hub, |reply| hub::Query::Hosts { reply }).await else {
        return Response::error(503, "shutting down");
    };
    let groups: Vec<Value> = hosts
        .iter()
        .map(|host| {
            json!({
                "targets": [host.id],
                "labels": {
                    "__meta_hostwatch_host_id": host.id,
                    "__meta_hostwatch_hostname": host.hostname,
                    "__meta_hostwatch_status": host.status,
                },
            })
        })
        .collect();
    Response::json(200, &groups)
}

/// The host id of `/metrics/hosts/{id}`, percent-decoded.
fn metrics_host_route(path: &str) -> Option<String> {
    let raw = path.strip_prefix("/metrics/hosts/")?;
    let id = percent_encoding::percent_decode_str(raw).decode_utf8().ok()?.into_owned();
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

fn not_allowed(allow: &str) -> Reply {
    Response::error(405, "method not allowed").with_header("Allow", allow)
}

fn asset_response(request: &Request, asset: &assets::Asset) -> Reply {
    // The gzip copy made at build time, for clients that take it; it is another representation,
    // so it has its own validator.
    let gzip = accepts_gzip(request.header("accept-encoding"));
    let etag = if gzip {
        format!("{}-gz\"", &asset.etag[..asset.etag.len() - 1])
    } else {
        asset.etag.to_owned()
    };
    let response = if request
        .header("if-none-match")
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        Response::bytes(304, asset.content_type, &b""[..])
    } else if gzip {
        Response::bytes(200, asset.content_type, asset.gzip).with_header("Content-Encoding", "gzip")
    } else {
        Response::bytes(200, asset.content_type, asset.bytes)
    };
    response
        .with_header("ETag", etag)
        .with_header("Vary", "Accept-Encoding")
        .with_header("Cache-Control", "no-cache")
}

/// Bodies smaller than this go uncompressed: gzip's header and trailer would eat the gain.
const COMPRESS_FROM: usize = 512;

/// Compresses a JSON, CSV or Prometheus answer with gzip when the client takes it (`Vary:
/// Accept-Encoding` either way). The page's files already have gzip copies made at build time
/// (they carry `Content-Encoding` and are left alone), and a stream is not compressed: SSE
/// events must reach the browser as they happen.
pub fn compress(request: &Request, mut response: Reply) -> Reply {
    use crate::net::http::server::Body;
    let compressible = response.headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("content-type")
            && ["application/json", "text/csv", "text/plain; version=0.0.4"]
                .iter()
                .any(|kind| value.starts_with(kind))
    });
    let encoded = response.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-encoding"));
    let Body::Bytes(body) = &response.body else { return response };
    if !compressible || encoded {
        return response;
    }
    response.headers.push(("Vary", "Accept-Encoding".into()));
    if body.len() < COMPRESS_FROM || !accepts_gzip(request.header("accept-encoding")) {
        return response;
    }
    // The fastest level: most of what gzip gains on JSON and CSV, at a fraction of the CPU a
    // large history answer would take on an executor thread at the default level.
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    let gzip = std::io::Write::write_all(&mut encoder, body).and_then(|()| encoder.finish());
    match gzip {
        Ok(gzip) => {
            response.body = Body::Bytes(gzip.into());
            response.headers.push(("Content-Encoding", "gzip".into()));
        }
        // Writing to memory does not fail; if it did, the plain body still answers.
        Err(err) => log::warn!("http: gzip failed: {err}"),
    }
    response
}

/// Whether an `Accept-Encoding` header takes gzip: listed (or `*`) without `q=0`.
fn accepts_gzip(header: Option<&str>) -> bool {
    header.is_some_and(|value| {
        value.split(',').any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.strip_prefix("q=").is_some_and(|q| q.parse::<f32>().is_ok_and(|q| q == 0.0))
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
    })
}

enum HostRoute {
    Host,
    History,
}

/// Splits `/api/hosts/{id}` and `/api/hosts/{id}/history`; the id is percent-decoded.
fn host_route(path: &str) -> Option<(String, HostRoute)> {
    let rest = path.strip_prefix("/api/hosts/")?;
    let (raw_id, route) = match rest.split_once('/') {
        None => (rest, HostRoute::Host),
        Some((id, "history")) => (id, HostRoute::History),
        Some(_) => return None,
    };
    let id = percent_encoding::percent_decode_str(raw_id).decode_utf8().ok()?.into_owned();
    (!id.is_empty()).then_some((id, route))
}

async fn hosts(ctx: &Ctx) -> Reply {
    match hub::ask(&ctx.hub, |reply| hub::Query::Hosts { reply }).await {
        Some(hosts) => Response::json(200, &hosts),
        None => Response::error(503, "shutting down"),
    }
}

async fn host(ctx: &Ctx, id: String) -> Reply {
    match hub::ask(&ctx.hub, |reply| hub::Query::Host { id: id.clone(), reply }).await {
        Some(Some(host)) => Response::json(200, &host),
        Some(None) => Response::error(404, format!("unknown host {id:?}")),
        None => Response::error(503, "shutting down"),
    }
}

async fn stats(ctx: &Ctx) -> Reply {
    let Some(stats) = hub::ask(&ctx.hub, |reply| hub::Query::Stats { reply }).await else {
        return Response::error(503, "shutting down");
    };
    let db_size = crate::storage::query::database_bytes(ctx.storage.path());
    let mut body = serde_json::to_value(&stats).unwrap_or_else(|_| json!({}));
    body["db_size_bytes"] = json!(db_size);
    let health = ctx.storage.health().view();
    body["storage_ok"] = json!(!health.failing);
    body["storage_failures_total"] = json!(health.failures_total);
    body["storage_error"] = json!(health.reason);
    body["storage_failing_since"] = json!(health.failing_since_ms);
    body["version"] = json!(env!("CARGO_PKG_VERSION"));
    if let Some(replica) = &ctx.replica {
        let status = replica.status();
        body["redis_up"] = json!(status.up);
        body["redis"] = json!(status);
    }
    Response::json(200, &body)
}

async fn clients(ctx: &Ctx) -> Reply {
    match hub::ask(&ctx.hub, |reply| hub::Query::Clients { reply }).await {
        Some(clients) => Response::json(200, &clients),
        None => Response::error(503, "shutting down"),
    }
}

/// A history request's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// Start, inclusive (unix ms).
    pub from: u64,
    /// End, exclusive (unix ms).
    pub to: u64,
    /// Bucket width, if downsampling.
    pub step: Option<u64>,
}

/// The latest time a history request may name, the end of the year 9999 (unix ms), and the
/// longest step. Larger values are nonsense, and would overflow where the storage rounds a range
/// out to whole hours and binds it to SQLite's signed 64-bit integers (found by fuzzing).
pub const MAX_TIME_MS: u64 = 253_402_300_800_000;

/// Reads `from`, `to` and `step` (defaults: the last hour, raw points).
pub fn parse_range(request: &Request, now_ms: u64) -> Result<Range, String> {
    let number = |name: &str| -> Result<Option<u64>, String> {
        match request.query_param(name) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .map(Some)
                .map_err(|_| format!("{name} must be unix milliseconds, not {v:?}")),
        }
    };
    let to = number("to")?.unwrap_or(now_ms + 1);
    let from = number("from")?.unwrap_or(to.saturating_sub(3_600_000));
    if to > MAX_TIME_MS {
        return Err(format!("to ({to}) is after the year 9999; times are unix milliseconds"));
    }
    if from >= to {
        return Err(format!("from ({from}) must be before to ({to})"));
    }
    let step = match request.query_param("step") {
        None => None,
        Some(v) => {
            let step = v
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("step must be milliseconds, not {v:?}"))?;
            if step == 0 {
                return Err("step must be at least 1 ms".into());
            }
            if step > MAX_TIME_MS {
                return Err(format!("step {step} is longer than ten thousand years"));
            }
            if (to - from) / step > MAX_BUCKETS {
                return Err(format!(
                    "step {step} makes more than {MAX_BUCKETS} points; use a larger step"
                ));
            }
            Some(step)
        }
    };
    Ok(Range { from, to, step })
}

/// Where a history request's points come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Raw samples, as stored.
    Raw,
    /// Raw samples averaged into buckets.
    RawBuckets,
    /// A rollup table whose bucket divides the step.
    Rollup(Rollup),
}

/// Picks the cheapest exact source for a step: rollups when their bucket divides the step (they
/// also reach further back than raw samples), raw samples otherwise.
pub fn source(step: Option<u64>) -> Source {
    match step {
        None => Source::Raw,
        Some(step) if step % 3_600_000 == 0 => Source::Rollup(Rollup::Hour),
        Some(step) if step % 60_000 == 0 => Source::Rollup(Rollup::Minute),
        Some(_) => Source::RawBuckets,
    }
}

async fn history(request: &Request, ctx: &Ctx, id: String) -> Reply {
    let range = match parse_range(request, crate::now_ms()) {
        Ok(range) => range,
        Err(message) => return Response::error(400, message),
    };
    let csv = match request.query_param("format").as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Response::error(400, format!("unknown format {other:?} (use json or csv)"));
        }
    };
    let selection = match request.query_param("series") {
        None => Selection::all(),
        Some(text) => match Selection::parse(&text) {
            Ok(selection) => selection,
            Err(message) => return Response::error(400, message),
        },
    };
    let host_id = id.clone();
    // The query and the encoding both run on the blocking pool (bounded by the reader pool), so
    // a large answer neither blocks the executor nor piles up in many copies.
    let result = ctx
        .readers
        .run(move |reader| {
            let Some(key) = reader.host_key(&host_id)? else { return Ok(None) };
            let (points, devices) = match source(range.step) {
                Source::Raw => {
                    let raw = reader.raw_rows(key, range.from, range.to, MAX_RAW_POINTS + 1)?;
                    if raw.rows.len() > MAX_RAW_POINTS {
                        return Ok(Some(Err(format!(
                            "more than {MAX_RAW_POINTS} points in this range; add a step or narrow the range"
                        ))));
                    }
                    let devices = crate::storage::rows::raw_devices(&raw.rows, &raw.names);
                    let points = raw.rows.iter().map(crate::storage::rows::point_of).collect();
                    (Points::Raw(points), devices)
                }
                Source::RawBuckets => {
                    let history =
                        reader.bucketed(key, range.from, range.to, range.step.unwrap_or(1))?;
                    (Points::Buckets(history.points), history.devices)
                }
                Source::Rollup(rollup) => {
                    let history = reader.rollup_bucketed(
                        rollup,
                        key,
                        range.from,
                        range.to,
                        range.step.unwrap_or(1),
                    )?;
                    (Points::Buckets(history.points), history.devices)
                }
            };
            let body =
                crate::api::history::encode(&host_id, range, &points, &devices, &selection, csv);
            Ok(Some(Ok(body)))
        })
        .await;
    match result {
        Ok(None) => Response::error(404, format!("unknown host {id:?}")),
        Ok(Some(Err(message))) => Response::error(400, message),
        Ok(Some(Ok(body))) if csv => {
            let name = format!("hostwatch-{}-{}-{}.csv", sanitize(&id), range.from, range.to);
            Response::bytes(200, "text/csv; charset=utf-8", body)
                .with_header("Content-Disposition", format!("attachment; filename=\"{name}\""))
        }
        Ok(Some(Ok(body))) => Response::bytes(200, "application/json", body),
        Err(err) => {
            log::error!("history of {}: {err:#}", crate::untrusted::escaped(&id));
            Response::error(500, "cannot read the history")
        }
    }
}

/// Encodes a history answer of host totals only, every series (the unit tests' view).
#[cfg(test)]
fn encode_history(host: &str, range: Range, points: &Points, csv: bool) -> Vec<u8> {
    let devices = crate::storage::rows::DeviceHistory::new();
    crate::api::history::encode(host, range, points, &devices, &Selection::all(), csv)
}

/// A host id made safe for a file name.
fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect()
}

/// CSV: a header row, then one row per point, every cell through
/// [`crate::untrusted::csv_cell`] (quoted where needed, never a spreadsheet formula).
pub fn to_csv(columns: &[String], rows: impl Iterator<Item = Vec<String>>) -> String {
    let line = |cells: &[String]| -> String {
        let cells: Vec<_> = cells.iter().map(|c| crate::untrusted::csv_cell(c)).collect();
        cells.join(",")
    };
    let mut out = line(columns);
    out.push('\n');
    for row in rows {
        out.push_str(&line(&row));
        out.push('\n');
    }
    out
}

fn events(request: &Request, ctx: &Ctx) -> Reply {
    let Some(slot) = SubscriberSlot::try_take(ctx) else {
        return Response::error(503, "too many live subscribers").with_header("Retry-After", "10");
    };
    let since = request.header("last-event-id").map(str::to_owned);
    let since = since.or_else(|| request.query_param("since"));
    let since = match crate::fanout::events::parse_resume(since.as_deref(), ctx.event_tag()) {
        Ok(since) => since,
        Err(message) => return Response::error(400, message),
    };
    let subscribe = SubscribeRequest {
        filter: Filter::from_query(&request.query_pairs()),
        since: since.after(),
        since_elsewhere: since == crate::fanout::events::Resume::Elsewhere,
        transport: "sse",
        addr: request.remote.to_string(),
    };
    Response {
        status: 200,
        headers: vec![
            ("Content-Type", "text/event-stream; charset=utf-8".into()),
            ("Cache-Control", "no-store".into()),
            // Reverse proxies must not buffer the stream.
            ("X-Accel-Buffering", "no".into()),
        ],
        body: crate::net::http::server::Body::Stream(LiveStream { request: subscribe, slot }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_default_to_the_last_hour_and_refuse_nonsense() {
        let now = 10_000_000;
        assert_eq!(
            parse_range(&Request::get("/h"), now),
            Ok(Range { from: now + 1 - 3_600_000, to: now + 1, step: None })
        );
        assert_eq!(
            parse_range(&Request::get("/h?from=5&to=10&step=2"), now),
            Ok(Range { from: 5, to: 10, step: Some(2) })
        );
        for bad in [
            "/h?from=x",
            "/h?from=10&to=5",
            "/h?from=1&to=2&step=0",
            "/h?step=-1",
            "/h?from=0&to=10000000&step=1",
            // Fuzzing's first crash (tests/fuzz/seeds/history_query/max): an overflow rounding
            // `to` up to whole hours in the storage, and not an i64 for SQLite.
            "/h?from=0&to=18446744073709551615&step=1844674407370956",
            "/h?to=253402300800001",
            "/h?from=0&to=253402300800000&step=253402300800001",
        ] {
            assert!(parse_range(&Request::get(bad), now).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_latest_accepted_range_survives_the_storages_rounding() {
        let max = MAX_TIME_MS;
        let range = parse_range(&Request::get(&format!("/h?from=0&to={max}&step={max}")), 0);
        let range = range.expect("the end of the year 9999 is accepted");
        assert!(range.to.div_ceil(3_600_000).checked_mul(3_600_000).is_some());
        assert!(i64::try_from(range.to.div_ceil(max) * max).is_ok());
    }

    #[test]
    fn steps_pick_the_cheapest_exact_source() {
        assert_eq!(source(None), Source::Raw);
        assert_eq!(source(Some(5_000)), Source::RawBuckets);
        assert_eq!(source(Some(90_000)), Source::RawBuckets);
        assert_eq!(source(Some(60_000)), Source::Rollup(Rollup::Minute));
        assert_eq!(source(Some(600_000)), Source::Rollup(Rollup::Minute));
        assert_eq!(source(Some(3_600_000)), Source::Rollup(Rollup::Hour));
        assert_eq!(source(Some(86_400_000)), Source::Rollup(Rollup::Hour));
    }

    #[test]
    fn history_encodes_as_json_and_csv_with_empty_cells_for_missing_values() {
        let point = crate::storage::Point {
            ts: 1000,
            cpu_percent: Some(12.5),
            cpu_cores_percent: vec![10.0, 15.0],
            ..Default::default()
        };
        let range = Range { from: 0, to: 2000, step: None };
        let csv =
            String::from_utf8(encode_history("h", range, &Points::Raw(vec![point.clone()]), true))
                .unwrap();
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let row: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!(header[0], "ts");
        assert_eq!(header.len(), row.len());
        let cell = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
        assert_eq!(cell("ts"), "1000");
        assert_eq!(cell("cpu_percent"), "12.5");
        assert_eq!(cell("memory_used_bytes"), "");
        assert_eq!(cell("cpu_cores_percent"), "10.0 15.0");

        // Buckets, written directly, are the same JSON as a parser reads it.
        let mut values = vec![[None, None, None]; METRICS.len()];
        values[0] = [Some(12.5), Some(1.0), Some(99.0)];
        values[1] = [Some(1000.4), Some(1000.0), Some(1001.0)];
        let bucket = Bucket { ts: 60_000, samples: 60, values };
        let range = Range { from: 0, to: 120_000, step: Some(60_000) };
        let json =
            encode_history("h\"1", range, &Points::Buckets(vec![bucket.clone(), bucket]), false);
        let body: Value = serde_json::from_slice(&json).expect("valid JSON");
        assert_eq!(body["host"], "h\"1");
        assert_eq!(body["step"], 60_000);
        let first = &body["points"][0];
        assert_eq!((first["ts"].clone(), first["samples"].clone()), (json!(60_000), json!(60)));
        assert_eq!(
            (first["cpu_percent"].clone(), first["cpu_percent_max"].clone()),
            (json!(12.5), json!(99.0))
        );
        assert_eq!(first["memory_used_bytes"], 1000, "bytes are whole");
        assert_eq!(first["load1"], Value::Null);
        let csv =
            String::from_utf8(encode_history("h", range, &Points::Buckets(vec![]), true)).unwrap();
        assert!(csv.starts_with("ts,samples,cpu_percent,cpu_percent_min,cpu_percent_max,"));
    }

    #[test]
    fn activity_queries_default_to_the_newest_fifty_and_refuse_bad_values() {
        let query = parse_activity_query(&Request::get("/api/activity")).unwrap();
        assert_eq!(query, ActivityQuery { before: None, limit: 50, filter: Filter::default() });
        let query = parse_activity_query(&Request::get(
            "/api/activity?before=120&limit=500&types=alert,host_removed&host=a",
        ))
        .unwrap();
        assert_eq!((query.before, query.limit), (Some(120), 500));
        assert_eq!(query.filter.kinds, Some(vec!["alert".to_owned(), "host_removed".to_owned()]));
        assert_eq!(query.filter.hosts, Some(vec!["a".to_owned()]));
        assert_eq!(parse_activity_query(&Request::get("/a?before=")).unwrap().before, None);
        for bad in [
            "/a?limit=0",
            "/a?limit=501",
            "/a?limit=-1",
            "/a?limit=ten",
            "/a?limit=",
            "/a?before=x",
            "/a?before=-5",
            "/a?before=1.5",
        ] {
            assert!(parse_activity_query(&Request::get(bad)).is_err(), "{bad}");
        }
        let many = (0..=ACTIVITY_FILTER_VALUES).map(|i| i.to_string()).collect::<Vec<_>>();
        let path = format!("/a?types={}", many.join(","));
        assert!(parse_activity_query(&Request::get(&path)).is_err());
    }

    #[test]
    fn metrics_host_paths_are_matched_exactly() {
        assert_eq!(metrics_host_route("/metrics/hosts/a%20b").as_deref(), Some("a b"));
        assert_eq!(metrics_host_route("/metrics/hosts/"), None);
        assert_eq!(metrics_host_route("/metrics/hosts/a/b"), None);
    }

    #[test]
    fn host_paths_are_matched_exactly() {
        assert!(matches!(host_route("/api/hosts/abc"), Some((id, HostRoute::Host)) if id == "abc"));
        assert!(
            matches!(host_route("/api/hosts/a%20b/history"), Some((id, HostRoute::History)) if id == "a b")
        );
        assert!(host_route("/api/hosts/").is_none());
        assert!(accepts_gzip(Some("gzip, deflate, br")));
        assert!(accepts_gzip(Some("br;q=1.0, GZIP;q=0.5")));
        assert!(accepts_gzip(Some("*")));
        assert!(!accepts_gzip(Some("gzip;q=0, br")));
        assert!(!accepts_gzip(Some("identity")));
        assert!(!accepts_gzip(None));
        assert!(host_route("/api/hosts/abc/other").is_none());
        assert!(host_route("/api/hosts/abc/history/x").is_none());
    }
}
