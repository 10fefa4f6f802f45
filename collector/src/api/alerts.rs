//! `GET /api/alerts` (firing now, and past alert events by time, paged) and the silences API
//! (`GET`/`POST /api/silences`, `DELETE /api/silences/ID`; writes need the admin token).

use serde_json::{Value, json};

use crate::Ctx;
use crate::api::routes::Reply;
use crate::fanout::hub;
use crate::net::http::server::{Request, Response};
use crate::storage::alerts::{Silence, SilenceChange};

/// Past alert events one page holds by default, and at most.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;
/// The longest silence.
pub const MAX_SILENCE_MS: u64 = 366 * 24 * 3600 * 1000;
/// The longest silence comment.
pub const MAX_COMMENT_CHARS: usize = 500;

/// `GET /api/alerts`: without parameters, the alerts firing now (a JSON array, as before
/// past events were kept); with any of `since`, `until` (unix ms), `limit`, `before` (an
/// event id) or `recent`, an object with `current` (firing now) and `recent` (alert events,
/// newest first) and `next_before` for the next page.
pub async fn alerts(request: &Request, ctx: &Ctx) -> Reply {
    let Some(current) = hub::ask(&ctx.hub, |reply| hub::Query::Alerts { reply }).await else {
        return Response::error(503, "shutting down");
    };
    let paged = ["since", "until", "limit", "before", "recent"]
        .iter()
        .any(|p| request.query_param(p).is_some());
    if !paged {
        return Response::json(200, &current);
    }
    let number = |name: &str| -> Result<Option<u64>, String> {
        match request.query_param(name) {
            None => Ok(None),
            Some(v) => {
                v.parse().map(Some).map_err(|_| format!("{name}={v:?} is not a whole number"))
            }
        }
    };
    let now = crate::now_ms();
    let parsed = (|| {
        Ok::<_, String>((number("since")?, number("until")?, number("before")?, number("limit")?))
    })();
    let (since, until, before, limit) = match parsed {
        Ok((s, u, b, l)) => (s.unwrap_or(0), u.unwrap_or(u64::MAX), b, l),
        Err(why) => return Response::error(400, why),
    };
    if since >= until {
        return Response::error(400, "since must be before until");
    }
    let limit = match limit {
        None => DEFAULT_PAGE,
        Some(n @ 1..) if n as usize <= MAX_PAGE => n as usize,
        Some(_) => return Response::error(400, format!("limit must be 1 to {MAX_PAGE}")),
    };
    let result = ctx.readers.run(move |r| r.alert_events(since, until, before, limit)).await;
    match result {
        Ok(recent) => {
            let next_before =
                (recent.len() == limit).then(|| recent.last().map(|e| e.id)).flatten();
            Response::json(
                200,
                &json!({ "current": current, "recent": recent, "next_before": next_before, "now_ms": now }),
            )
        }
        Err(err) => {
            log::warn!("alert events: {err:#}");
            Response::error(503, "the database cannot be read now")
        }
    }
}

/// Whether a path is the silences API's.
pub fn is_silences(path: &str) -> bool {
    path == "/api/silences" || path.starts_with("/api/silences/")
}

/// `/api/silences` and `/api/silences/ID`.
pub async fn silences(request: &Request, ctx: &Ctx) -> Reply {
    let id = request.path.strip_prefix("/api/silences/");
    match (request.method.as_str(), id) {
        ("GET" | "HEAD", None) => list(ctx).await,
        ("POST", None) => match admin(request, ctx) {
            Some(refused) => refused,
            None => create(request, ctx).await,
        },
        ("DELETE", Some(id)) => match admin(request, ctx) {
            Some(refused) => refused,
            None => delete(id, ctx).await,
        },
        (_, None) => {
            Response::error(405, "use GET or POST").with_header("Allow", "GET, HEAD, POST")
        }
        (_, Some(_)) => Response::error(405, "use DELETE").with_header("Allow", "DELETE"),
    }
}

/// The refusal when the request lacks the admin token.
fn admin(request: &Request, ctx: &Ctx) -> Option<Reply> {
    if !ctx.access.admin_configured() {
        return Some(Response::error(
            403,
            "silences are read-only: start the collector with --admin-token-file to change them",
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

fn shown(silence: &Silence, now: u64) -> Value {
    let mut value = serde_json::to_value(silence).unwrap_or_else(|_| json!({}));
    value["active"] = json!(now < silence.until_ms);
    value
}

async fn list(ctx: &Ctx) -> Reply {
    match ctx.readers.run(|r| r.silences()).await {
        Ok(silences) => {
            let now = crate::now_ms();
            Response::json(200, &silences.iter().map(|s| shown(s, now)).collect::<Vec<_>>())
        }
        Err(err) => {
            log::warn!("silences: {err:#}");
            Response::error(503, "the database cannot be read now")
        }
    }
}

/// Reads `{"host"?, "rule"?, "until_ms" | "duration", "comment"?}`.
fn parse_silence(body: &[u8], now: u64, by: String) -> Result<Silence, String> {
    let body: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let text = |name: &str| -> Result<Option<String>, String> {
        match body.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if crate::untrusted::has_control(s) => {
                Err(format!("{name} has control characters"))
            }
            Some(Value::String(s)) if s.trim().is_empty() => Err(format!("{name} is empty")),
            Some(Value::String(s)) if s.chars().count() > MAX_COMMENT_CHARS => {
                Err(format!("{name} is over {MAX_COMMENT_CHARS} characters"))
            }
            Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
            Some(_) => Err(format!("{name} must be a string")),
        }
    };
    let host = text("host")?;
    let rule = text("rule")?;
    if host.is_none() && rule.is_none() {
        return Err("give host and/or rule (globs; \"*\" for every host)".into());
    }
    let until_ms = match (body.get("until_ms"), text("duration")?) {
        (Some(v), None) => v.as_u64().ok_or("until_ms must be unix milliseconds")?,
        (None, Some(d)) => {
            let d = humantime::parse_duration(&d)
                .map_err(|_| format!("duration {d:?} is not a duration (such as 2h)"))?;
            now.saturating_add(d.as_millis() as u64)
        }
        (Some(_), Some(_)) => return Err("give until_ms or duration, not both".into()),
        (None, None) => return Err("give until_ms (unix ms) or duration (such as \"2h\")".into()),
    };
    if until_ms <= now {
        return Err("until_ms is in the past".into());
    }
    if until_ms - now > MAX_SILENCE_MS {
        return Err("a silence lasts at most a year".into());
    }
    Ok(Silence {
        id: 0,
        host,
        rule,
        until_ms,
        created_ms: now,
        comment: text("comment")?.unwrap_or_default(),
        created_by: by,
        origin: None,
    })
}

async fn create(request: &Request, ctx: &Ctx) -> Reply {
    let now = crate::now_ms();
    let silence = match parse_silence(&request.body, now, request.remote.to_string()) {
        Ok(silence) => silence,
        Err(why) => return Response::error(400, why),
    };
    match ctx.storage.change_silences(SilenceChange::Add(silence)).await {
        Ok(Some(silence)) => {
            log::info!(
                "silence {} from {}: host {} rule {} until {}",
                silence.id,
                request.remote,
                crate::untrusted::escaped(silence.host.as_deref().unwrap_or("*")),
                crate::untrusted::escaped(silence.rule.as_deref().unwrap_or("*")),
                silence.until_ms
            );
            let mut body = shown(&silence, now);
            // With --redis every collector holds it, so whichever sends the notification
            // holds it back.
            if let Some(replica) = &ctx.replica {
                body["replicated"] = json!(replica.silence_added(&silence).await);
            }
            // At shutdown the hub is gone; the silence is stored for the next start.
            let _ = ctx.hub.send(hub::Event::Silenced(silence)).await;
            Response::json(201, &body)
        }
        Ok(None) => Response::error(500, "the silence was not stored"),
        Err(err) => Response::error(503, format!("storage: {err}")),
    }
}

async fn delete(id: &str, ctx: &Ctx) -> Reply {
    let Ok(id) = id.parse::<u64>() else {
        return Response::error(404, format!("no silence {id:?}"));
    };
    match ctx.storage.change_silences(SilenceChange::Delete(id)).await {
        Ok(Some(silence)) => {
            log::info!("silence {id} deleted");
            let mut body = json!({ "deleted": shown(&silence, crate::now_ms()) });
            if let Some(replica) = &ctx.replica {
                body["replicated"] = json!(replica.silence_deleted(&silence).await);
            }
            // As above: at shutdown nobody needs to hear of it.
            let _ = ctx.hub.send(hub::Event::Unsilenced(id)).await;
            Response::json(200, &body)
        }
        Ok(None) => Response::error(404, format!("no silence {id}")),
        Err(err) => Response::error(503, format!("storage: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silences_need_a_target_and_an_end_in_the_future() {
        let parse = |body: &str| parse_silence(body.as_bytes(), 1_000, "t".into());
        let s = parse(r#"{"host": "web-*", "duration": "2h", "comment": "upgrade"}"#).unwrap();
        assert_eq!(
            (s.host.as_deref(), s.rule, s.until_ms),
            (Some("web-*"), None, 1_000 + 7_200_000)
        );
        assert!(parse(r#"{"rule": "x", "until_ms": 5000}"#).is_ok());
        assert!(parse(r#"{"duration": "2h"}"#).unwrap_err().contains("host and/or rule"));
        assert!(parse(r#"{"host": "h"}"#).unwrap_err().contains("until_ms"));
        assert!(parse(r#"{"host": "h", "until_ms": 10}"#).unwrap_err().contains("past"));
        assert!(parse(r#"{"host": "h\u001b", "duration": "1h"}"#).unwrap_err().contains("control"));
        assert!(parse("nope").unwrap_err().contains("JSON"));
    }
}
