//! Routing: exact path matching, one function per endpoint. Each handler is a function of the
//! request and the collector's state (asked of the hub or read from the database) to a response.

use serde_json::{Value, json};

use crate::Ctx;
use crate::events::Filter;
use crate::http::assets;
use crate::http::server::{Request, Response};
use crate::hub::{self, SubscribeRequest};

/// A response whose stream, if any, is an SSE subscription.
pub type Reply = Response<SubscribeRequest>;

/// The longest range of raw points one history request may return.
pub const MAX_RAW_POINTS: usize = 100_000;
/// The most buckets one downsampled history request may return.
pub const MAX_BUCKETS: u64 = 100_000;

/// Headers on every response.
pub fn common_headers() -> [(&'static str, String); 4] {
    [
        ("X-Content-Type-Options", "nosniff".into()),
        ("Referrer-Policy", "no-referrer".into()),
        ("X-Frame-Options", "DENY".into()),
        (
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self' ws: wss:; \
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
    if let Some(asset) = assets::find(path) {
        return if read {
            asset_response(request, asset)
        } else {
            not_allowed("GET, HEAD")
        };
    }
    let response = match path {
        "/healthz" if read => Response::bytes(200, "text/plain; charset=utf-8", &b"ok\n"[..]),
        "/api/hosts" if read => hosts(ctx).await,
        "/api/stats" if read => stats(ctx).await,
        "/api/clients" if read => clients(ctx).await,
        "/events" if method == "GET" => events(request),
        "/healthz" | "/api/hosts" | "/api/stats" | "/api/clients" | "/events" => not_allowed("GET"),
        _ => match host_route(path) {
            Some(_) if !read => not_allowed("GET"),
            Some((id, HostRoute::Host)) => host(ctx, id).await,
            Some((id, HostRoute::History)) => history(request, ctx, id).await,
            None => Response::error(404, format!("no such path: {path}")),
        },
    };
    response.with_header("Cache-Control", "no-store")
}

fn not_allowed(allow: &str) -> Reply {
    Response::error(405, "method not allowed").with_header("Allow", allow)
}

fn asset_response(request: &Request, asset: &assets::Asset) -> Reply {
    let etag = assets::etag(asset);
    if request
        .header("if-none-match")
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return Response::bytes(304, asset.content_type, &b""[..]).with_header("ETag", etag);
    }
    Response::bytes(200, asset.content_type, asset.bytes)
        .with_header("ETag", etag)
        .with_header("Cache-Control", "no-cache")
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
    let id = percent_encoding::percent_decode_str(raw_id)
        .decode_utf8()
        .ok()?
        .into_owned();
    (!id.is_empty()).then_some((id, route))
}

async fn hosts(ctx: &Ctx) -> Reply {
    match hub::ask(&ctx.hub, |reply| hub::Event::Hosts { reply }).await {
        Some(hosts) => Response::json(200, &hosts),
        None => Response::error(503, "shutting down"),
    }
}

async fn host(ctx: &Ctx, id: String) -> Reply {
    match hub::ask(&ctx.hub, |reply| hub::Event::Hosts { reply }).await {
        Some(hosts) => match hosts.into_iter().find(|h| h.id == id) {
            Some(host) => Response::json(200, &host),
            None => Response::error(404, format!("unknown host {id:?}")),
        },
        None => Response::error(503, "shutting down"),
    }
}

async fn stats(ctx: &Ctx) -> Reply {
    let Some(stats) = hub::ask(&ctx.hub, |reply| hub::Event::Stats { reply }).await else {
        return Response::error(503, "shutting down");
    };
    let db_size = ctx.readers.run(|reader| reader.database_bytes()).await.ok();
    let mut body = serde_json::to_value(&stats).unwrap_or_else(|_| json!({}));
    body["db_size_bytes"] = json!(db_size);
    body["version"] = json!(env!("CARGO_PKG_VERSION"));
    Response::json(200, &body)
}

async fn clients(ctx: &Ctx) -> Reply {
    match hub::ask(&ctx.hub, |reply| hub::Event::Clients { reply }).await {
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

async fn history(request: &Request, ctx: &Ctx, id: String) -> Reply {
    let range = match parse_range(request, crate::now_ms()) {
        Ok(range) => range,
        Err(message) => return Response::error(400, message),
    };
    if let Some(format) = request.query_param("format").filter(|f| f != "json") {
        return Response::error(400, format!("unknown format {format:?} (use json)"));
    }
    let host_id = id.clone();
    let result = ctx
        .readers
        .run(move |reader| {
            let Some(key) = reader.host_key(&host_id)? else { return Ok(None) };
            let points: Vec<Value> = match range.step {
                None => {
                    let points = reader.raw_points(key, range.from, range.to, MAX_RAW_POINTS + 1)?;
                    if points.len() > MAX_RAW_POINTS {
                        return Ok(Some(Err(format!(
                            "more than {MAX_RAW_POINTS} points in this range; add a step or narrow the range"
                        ))));
                    }
                    points.into_iter().map(|p| serde_json::to_value(p).unwrap_or(Value::Null)).collect()
                }
                Some(step) => reader
                    .bucketed(key, range.from, range.to, step)?
                    .points
                    .into_iter()
                    .map(Value::Object)
                    .collect(),
            };
            Ok(Some(Ok(points)))
        })
        .await;
    match result {
        Ok(None) => Response::error(404, format!("unknown host {id:?}")),
        Ok(Some(Err(message))) => Response::error(400, message),
        Ok(Some(Ok(points))) => Response::json(
            200,
            &json!({ "host": id, "from": range.from, "to": range.to, "step": range.step, "points": points }),
        ),
        Err(err) => {
            log::error!("history of {id}: {err:#}");
            Response::error(500, "cannot read the history")
        }
    }
}

fn events(request: &Request) -> Reply {
    let since = match request
        .header("last-event-id")
        .map(str::to_owned)
        .or_else(|| request.query_param("since"))
    {
        None => None,
        Some(v) if v.trim().is_empty() => None,
        Some(v) => match v.trim().parse::<u64>() {
            Ok(id) => Some(id),
            Err(_) => return Response::error(400, format!("bad event id {v:?}")),
        },
    };
    let subscribe = SubscribeRequest {
        filter: Filter::from_query(&request.query_pairs()),
        since,
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
        body: crate::http::server::Body::Stream(subscribe),
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
            Ok(Range {
                from: now + 1 - 3_600_000,
                to: now + 1,
                step: None
            })
        );
        assert_eq!(
            parse_range(&Request::get("/h?from=5&to=10&step=2"), now),
            Ok(Range {
                from: 5,
                to: 10,
                step: Some(2)
            })
        );
        for bad in [
            "/h?from=x",
            "/h?from=10&to=5",
            "/h?from=1&to=2&step=0",
            "/h?step=-1",
            "/h?from=0&to=10000000&step=1",
        ] {
            assert!(parse_range(&Request::get(bad), now).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_paths_are_matched_exactly() {
        assert!(matches!(host_route("/api/hosts/abc"), Some((id, HostRoute::Host)) if id == "abc"));
        assert!(
            matches!(host_route("/api/hosts/a%20b/history"), Some((id, HostRoute::History)) if id == "a b")
        );
        assert!(host_route("/api/hosts/").is_none());
        assert!(host_route("/api/hosts/abc/other").is_none());
        assert!(host_route("/api/hosts/abc/history/x").is_none());
    }
}
