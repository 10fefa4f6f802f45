//! A small HTTP/1.1 server on smol, parsing with `httparse`.
//!
//! The collector started on tiny_http, which has no limit on header size, no timeouts of any
//! kind, performs TLS handshakes on its single accept thread and needs a thread per open
//! connection (so 1,000 SSE viewers would be 1,000+ threads). This module keeps tiny_http's
//! shape — a handler is a function of (request, state) to a response — on async connections with
//! explicit limits: head size and header count, body size, time to send a head, idle time
//! between requests, and a timeout on every write.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Duration;

use agent::runtime::within;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use serde::Serialize;

/// Limits of one HTTP connection.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Largest request head (request line and headers).
    pub max_head_bytes: usize,
    /// Most headers in a request.
    pub max_headers: usize,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Time allowed to send a whole request head once it started.
    pub head_timeout: Duration,
    /// Time a kept-alive connection may sit without a new request.
    pub idle_timeout: Duration,
    /// Time allowed for the client to take each write.
    pub write_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_head_bytes: 16 * 1024,
            max_headers: 64,
            max_body_bytes: 64 * 1024,
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// A parsed request.
#[derive(Debug, Clone)]
pub struct Request {
    /// Method, such as `GET`.
    pub method: String,
    /// Path without the query, percent-encoded as received.
    pub path: String,
    /// The query string without `?`.
    pub query: String,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Peer address.
    pub remote: SocketAddr,
}

impl Request {
    /// A request for tests and internal use: `Request::get("/api/hosts?x=1")`.
    pub fn get(target: &str) -> Self {
        Self::new("GET", target, Vec::new())
    }

    /// A request with any method and body.
    pub fn new(method: &str, target: &str, body: Vec<u8>) -> Self {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Self {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            headers: Vec::new(),
            body,
            remote: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }

    /// Adds a header (builder style, for tests).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The decoded query parameters.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.query.as_bytes()).into_owned().collect()
    }

    /// The value of a query parameter.
    pub fn query_param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// What a handler answers.
pub struct Response<E> {
    /// Status code.
    pub status: u16,
    /// Extra headers (Content-Length and Connection are added by the server).
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Body<E>,
}

/// A response body: bytes, or an event stream the server hands to `E`'s handler.
pub enum Body<E> {
    /// A complete body.
    Bytes(Cow<'static, [u8]>),
    /// A long-lived stream (Server-Sent Events) that takes over the connection.
    Stream(E),
}

impl<E> Response<E> {
    /// A response with a complete body.
    pub fn bytes(status: u16, content_type: &str, body: impl Into<Cow<'static, [u8]>>) -> Self {
        Self {
            status,
            headers: vec![("Content-Type", content_type.to_owned())],
            body: Body::Bytes(body.into()),
        }
    }

    /// A JSON response.
    pub fn json(status: u16, value: &impl Serialize) -> Self {
        // Serializing our own plain data types cannot fail.
        let body = serde_json::to_vec(value).expect("JSON encoding");
        Self::bytes(status, "application/json", body)
    }

    /// A JSON error: `{"error": message}`.
    pub fn error(status: u16, message: impl std::fmt::Display) -> Self {
        Self::json(status, &serde_json::json!({ "error": message.to_string() }))
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The body bytes, for tests.
    pub fn body_bytes(&self) -> &[u8] {
        match &self.body {
            Body::Bytes(bytes) => bytes,
            Body::Stream(_) => &[],
        }
    }
}

/// Why reading a request failed.
#[derive(Debug)]
pub enum ReadError {
    /// The client closed or went quiet between requests: close without a word.
    Closed,
    /// The client broke a rule: answer with this status and message, then close.
    Refuse(u16, String),
}

/// How a request's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length` bytes (0 without the header).
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A request whose head was read and whose body is still on the connection.
#[derive(Debug)]
pub struct Head {
    /// The request, its body still empty.
    pub request: Request,
    /// How its body comes.
    pub framing: Framing,
}

impl Head {
    /// Whether the client waits for `100 Continue` before it sends a body not yet received
    /// (`Expect: 100-continue`; [`read_head`] refused any other expectation).
    pub fn wants_continue(&self, buffer: &[u8]) -> bool {
        let waiting = match self.framing {
            Framing::Length(0) => false,
            Framing::Length(length) => buffer.len() < length,
            Framing::Chunked => buffer.is_empty(),
        };
        waiting && self.request.header("expect").is_some()
    }
}

/// What a server writes to let a client that sent `Expect: 100-continue` send its body.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Reads one request, whose first byte may take up to `wait` to come. `buffer` carries bytes
/// already read past the previous request.
pub async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut Vec<u8>,
    remote: SocketAddr,
    limits: &HttpLimits,
    wait: Duration,
) -> Result<Request, ReadError> {
    let head = read_head(stream, buffer, remote, limits, wait).await?;
    read_body(stream, buffer, head, limits).await
}

/// Reads one request head and checks how its body is framed (without reading it).
pub async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut Vec<u8>,
    remote: SocketAddr,
    limits: &HttpLimits,
    wait: Duration,
) -> Result<Head, ReadError> {
    if buffer.is_empty() {
        let first = within(wait, fill(stream, buffer, limits.max_head_bytes));
        match first.await {
            None | Some(Ok(0) | Err(_)) => return Err(ReadError::Closed),
            Some(Ok(_)) => {}
        }
    }
    let head = async {
        loop {
            let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
            let mut parsed = httparse::Request::new(&mut headers);
            match parsed.parse(buffer) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let request = Request {
                        method: parsed.method.unwrap_or("GET").to_owned(),
                        path: String::new(),
                        query: String::new(),
                        headers: parsed
                            .headers
                            .iter()
                            .map(|h| {
                                (
                                    h.name.to_ascii_lowercase(),
                                    String::from_utf8_lossy(h.value).into_owned(),
                                )
                            })
                            .collect(),
                        body: Vec::new(),
                        remote,
                    };
                    let target = parsed.path.unwrap_or("/").to_owned();
                    let version = parsed.version.unwrap_or(1);
                    return Ok((request, target, version, head_len));
                }
                Ok(httparse::Status::Partial) => {
                    if buffer.len() >= limits.max_head_bytes {
                        return Err(ReadError::Refuse(431, "request head too large".into()));
                    }
                    match fill(stream, buffer, limits.max_head_bytes).await {
                        Ok(0) | Err(_) => return Err(ReadError::Closed),
                        Ok(_) => {}
                    }
                }
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(ReadError::Refuse(
                        431,
                        format!("more than {} headers", limits.max_headers),
                    ));
                }
                Err(err) => {
                    return Err(ReadError::Refuse(400, format!("malformed request: {err}")));
                }
            }
        }
    };
    let (mut request, target, version, head_len) =
        within(limits.head_timeout, head).await.unwrap_or_else(|| {
            Err(ReadError::Refuse(408, "request head not received in time".into()))
        })?;
    buffer.drain(..head_len);
    if version == 0 && request.header("connection").is_none() {
        request.headers.push(("connection".into(), "close".into()));
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    request.path = path.to_owned();
    request.query = query.to_owned();

    if let Some(expect) = request.header("expect")
        && !expect.trim().eq_ignore_ascii_case("100-continue")
    {
        return Err(ReadError::Refuse(417, format!("unknown expectation {expect:?}")));
    }
    let length = content_length(&request)?;
    let codings: Vec<&str> = request
        .headers
        .iter()
        .filter(|(n, _)| n == "transfer-encoding")
        .map(|(_, v)| v.as_str())
        .collect();
    if !codings.is_empty() {
        if length.is_some() {
            // Which one frames the body is exactly what a proxy and this server could disagree
            // on (request smuggling): RFC 9112 §6.1 lets a server refuse such a request.
            return Err(ReadError::Refuse(
                400,
                "both Transfer-Encoding and Content-Length; send one".into(),
            ));
        }
        if version == 0 {
            // HTTP/1.0 has no chunked coding: a proxy of that version would frame it otherwise.
            return Err(ReadError::Refuse(400, "Transfer-Encoding in an HTTP/1.0 request".into()));
        }
        let chunked_only = codings.len() == 1 && codings[0].trim().eq_ignore_ascii_case("chunked");
        if !chunked_only {
            return Err(ReadError::Refuse(
                501,
                format!(
                    "transfer coding {:?} not supported; send chunked or Content-Length",
                    codings.join(", ")
                ),
            ));
        }
        return Ok(Head { request, framing: Framing::Chunked });
    }
    let length = length.unwrap_or(0);
    if length > limits.max_body_bytes {
        return Err(ReadError::Refuse(413, format!("body over {} bytes", limits.max_body_bytes)));
    }
    Ok(Head { request, framing: Framing::Length(length) })
}

/// Reads a request's body as its head frames it, within the head deadline and the body limit.
pub async fn read_body<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut Vec<u8>,
    head: Head,
    limits: &HttpLimits,
) -> Result<Request, ReadError> {
    let Head { mut request, framing } = head;
    let body = async {
        match framing {
            Framing::Length(length) => {
                while buffer.len() < length {
                    match fill(stream, buffer, length).await {
                        Ok(0) | Err(_) => return Err(ReadError::Closed),
                        Ok(_) => {}
                    }
                }
                Ok(buffer.drain(..length).collect())
            }
            Framing::Chunked => read_chunked(stream, buffer, limits).await,
        }
    };
    request.body = within(limits.head_timeout, body).await.unwrap_or_else(|| {
        Err(ReadError::Refuse(408, "request body not received in time".into()))
    })?;
    Ok(request)
}

/// Longest chunk-size line (size and extensions) taken.
const MAX_CHUNK_LINE: usize = 1024;

/// Decodes a chunked body (RFC 9112 §7.1): chunks up to the body limit, then trailers, which are
/// read within the head limit and dropped.
async fn read_chunked<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut Vec<u8>,
    limits: &HttpLimits,
) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    loop {
        let line = read_line(stream, buffer, MAX_CHUNK_LINE, "chunk size line").await?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size =
            (!size.is_empty() && size.len() <= 8 && size.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| usize::from_str_radix(size, 16).ok())
                .flatten()
                .ok_or_else(|| ReadError::Refuse(400, format!("bad chunk size {size:?}")))?;
        if size == 0 {
            let mut trailers = 0;
            loop {
                let line = read_line(stream, buffer, limits.max_head_bytes, "trailer").await?;
                trailers += line.len() + 2;
                if line.is_empty() {
                    return Ok(body);
                }
                if trailers > limits.max_head_bytes {
                    return Err(ReadError::Refuse(431, "trailers too large".into()));
                }
            }
        }
        if body.len() + size > limits.max_body_bytes {
            return Err(ReadError::Refuse(
                413,
                format!("body over {} bytes", limits.max_body_bytes),
            ));
        }
        while buffer.len() < size + 2 {
            match fill(stream, buffer, size + 2).await {
                Ok(0) | Err(_) => return Err(ReadError::Closed),
                Ok(_) => {}
            }
        }
        if &buffer[size..size + 2] != b"\r\n" {
            return Err(ReadError::Refuse(400, "chunk data not followed by CRLF".into()));
        }
        body.extend_from_slice(&buffer[..size]);
        buffer.drain(..size + 2);
    }
}

/// Reads one CRLF-terminated line of at most `max` bytes off the front of `buffer`.
async fn read_line<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut Vec<u8>,
    max: usize,
    what: &str,
) -> Result<String, ReadError> {
    loop {
        if let Some(end) = buffer.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&buffer[..end]).into_owned();
            buffer.drain(..end + 2);
            return Ok(line);
        }
        if buffer.len() > max {
            return Err(ReadError::Refuse(400, format!("{what} too long")));
        }
        match fill(stream, buffer, max + 2).await {
            Ok(0) | Err(_) => return Err(ReadError::Closed),
            Ok(_) => {}
        }
    }
}

/// The body length a request declares: one `Content-Length` header of plain digits, else the
/// request is refused with 400 (a proxy that read another one would
/// see a different request boundary: request smuggling).
fn content_length(request: &Request) -> Result<Option<usize>, ReadError> {
    let mut length = None;
    for (_, value) in request.headers.iter().filter(|(name, _)| name == "content-length") {
        let value = value.trim();
        let parsed = (!value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()))
            .then(|| value.parse::<usize>().ok())
            .flatten()
            .ok_or_else(|| ReadError::Refuse(400, format!("bad Content-Length {value:?}")))?;
        match length {
            Some(l) if l != parsed => {
                return Err(ReadError::Refuse(400, "conflicting Content-Length headers".into()));
            }
            // Even equal ones: a proxy that joined or dropped one frames the request otherwise.
            Some(_) => {
                return Err(ReadError::Refuse(400, "duplicate Content-Length headers".into()));
            }
            None => {}
        }
        length = Some(parsed);
    }
    Ok(length)
}

/// Reads more bytes into `buffer`, never letting it grow past `max` (plus one read).
async fn fill<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<usize> {
    let mut chunk = [0u8; 4096];
    let want = max.saturating_sub(buffer.len()).clamp(1, chunk.len());
    let n = stream.read(&mut chunk[..want]).await?;
    buffer.extend_from_slice(&chunk[..n]);
    Ok(n)
}

/// Whether the connection stays open after answering `request`.
pub fn keep_alive(request: &Request) -> bool {
    // `Connection` is a list of tokens (`keep-alive, Upgrade`, `close, TE`).
    !request
        .header("connection")
        .is_some_and(|v| v.split(',').any(|token| token.trim().eq_ignore_ascii_case("close")))
}

/// Writes a response head and, unless `head_only`, its bytes body.
pub async fn write_response<S: AsyncWrite + Unpin, E>(
    stream: &mut S,
    response: &Response<E>,
    keep_alive: bool,
    head_only: bool,
    limits: &HttpLimits,
) -> std::io::Result<()> {
    let mut out =
        format!("HTTP/1.1 {} {}\r\n", response.status, reason(response.status)).into_bytes();
    for (name, value) in &response.headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    match &response.body {
        Body::Bytes(body) => {
            out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
            out.extend_from_slice(if keep_alive {
                b"Connection: keep-alive\r\n\r\n"
            } else {
                b"Connection: close\r\n\r\n"
            });
            if !head_only {
                out.extend_from_slice(body);
            }
        }
        Body::Stream(_) => out.extend_from_slice(b"Connection: close\r\n\r\n"),
    }
    write_all(stream, &out, limits.write_timeout).await
}

/// Writes bytes and flushes, failing if the client does not take them within `timeout`.
pub async fn write_all<S: AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
    timeout: Duration,
) -> std::io::Result<()> {
    let write = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    within(timeout, write).await.unwrap_or_else(|| {
        Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "client did not read in time"))
    })
}

/// The reason phrase of a status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8], limits: &HttpLimits) -> Result<(Request, Vec<u8>), ReadError> {
        let mut stream = futures_lite::io::Cursor::new(bytes.to_vec());
        let mut buffer = Vec::new();
        let request = smol::block_on(read_request(
            &mut stream,
            &mut buffer,
            SocketAddr::from(([127, 0, 0, 1], 1)),
            limits,
            limits.idle_timeout,
        ))?;
        Ok((request, buffer))
    }

    #[test]
    fn parses_a_request_with_query_headers_and_body() {
        let (request, rest) = read(
            b"POST /api/broadcast?x=1&y=a%20b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n",
            &HttpLimits::default(),
        )
        .unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/api/broadcast");
        assert_eq!(request.query_param("y").as_deref(), Some("a b"));
        assert_eq!(request.header("HOST"), Some("h"));
        assert_eq!(request.body, b"hello");
        assert_eq!(rest, b"GET / HTTP/1.1\r\n", "pipelined bytes stay for the next request");
        assert!(keep_alive(&request));
    }

    #[test]
    fn limits_are_enforced_with_the_right_status() {
        let limits = HttpLimits {
            max_head_bytes: 64,
            max_headers: 2,
            max_body_bytes: 4,
            ..HttpLimits::default()
        };
        let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(100));
        assert!(matches!(read(huge.as_bytes(), &limits), Err(ReadError::Refuse(431, _))));
        let many = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert!(matches!(read(many, &limits), Err(ReadError::Refuse(431, _))));
        let big = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        assert!(matches!(read(big, &limits), Err(ReadError::Refuse(413, _))));
        let gzip = b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n";
        assert!(matches!(read(gzip, &limits), Err(ReadError::Refuse(501, _))));
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n";
        assert!(matches!(read(chunked, &limits), Err(ReadError::Refuse(413, _))));
        let expect = b"POST / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n";
        assert!(matches!(read(expect, &limits), Err(ReadError::Refuse(417, _))));
        assert!(matches!(read(b"NOT HTTP\r\n\r\n", &limits), Err(ReadError::Refuse(400, _))));
        assert!(matches!(read(b"", &limits), Err(ReadError::Closed)));
    }

    #[test]
    fn content_length_must_be_digits_and_agree() {
        let limits = HttpLimits::default();
        let refused = |head: &str| match read(head.as_bytes(), &limits) {
            Err(ReadError::Refuse(status, _)) => status,
            Err(ReadError::Closed) => 0,
            Ok(_) => 200,
        };
        let two = "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(refused(two), 400);
        assert_eq!(refused("POST / HTTP/1.1\r\nContent-Length: +0\r\n\r\n"), 400);
        assert_eq!(refused("POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\nh"), 400);
        assert_eq!(refused("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"), 400);
        let both = "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(refused(both), 400);
        let same = "POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\nhello";
        assert_eq!(refused(same), 400, "a duplicate, even equal, is refused");
        let one = "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        let (request, _) = read(one.as_bytes(), &limits).unwrap();
        assert_eq!(request.body, b"hello");
    }

    #[test]
    fn chunked_bodies_are_decoded_with_extensions_and_trailers() {
        let limits = HttpLimits::default();
        let (request, rest) = read(
            b"POST /api/broadcast HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;name=x\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Sum: 1\r\n\r\nGET /",
            &limits,
        )
        .unwrap();
        assert_eq!(request.body, b"hello 0123456789");
        assert_eq!(rest, b"GET /", "what follows the last chunk is the next request");
        let refused = |bytes: &[u8]| match read(bytes, &limits) {
            Err(ReadError::Refuse(status, _)) => status,
            Err(ReadError::Closed) => 0,
            Ok(_) => 200,
        };
        let chunked = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        for bad in ["+5\r\nhello\r\n0\r\n\r\n", "zz\r\n", "5\r\nhelloXX0\r\n\r\n", "123456789\r\n"]
        {
            assert_eq!(refused(format!("{chunked}{bad}").as_bytes()), 400, "{bad:?}");
        }
        assert_eq!(refused(format!("{chunked}5\r\nhel").as_bytes()), 0, "cut off");
        let old = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(refused(old), 400);
    }

    #[test]
    fn connection_is_a_token_list_and_100_continue_is_only_for_a_missing_body() {
        let limits = HttpLimits::default();
        let (request, _) =
            read(b"GET / HTTP/1.1\r\nConnection: TE, close\r\n\r\n", &limits).unwrap();
        assert!(!keep_alive(&request));
        let mut stream = futures_lite::io::Cursor::new(
            b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n".to_vec(),
        );
        let mut buffer = Vec::new();
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        let head =
            smol::block_on(read_head(&mut stream, &mut buffer, addr, &limits, limits.idle_timeout))
                .unwrap();
        assert!(head.wants_continue(&buffer));
        assert!(!head.wants_continue(b"ok"), "the body is here already");
    }

    #[test]
    fn http_1_0_closes_by_default() {
        let (request, _) = read(b"GET / HTTP/1.0\r\n\r\n", &HttpLimits::default()).unwrap();
        assert!(!keep_alive(&request));
    }

    #[test]
    fn a_slow_head_times_out_with_408() {
        let limits =
            HttpLimits { head_timeout: Duration::from_millis(50), ..HttpLimits::default() };
        let (mut client, server) = std::os::unix::net::UnixStream::pair().unwrap();
        use std::io::Write;
        client.write_all(b"GET / HT").unwrap();
        let mut server = smol::Async::new(server).unwrap();
        let mut buffer = Vec::new();
        let result = smol::block_on(read_request(
            &mut server,
            &mut buffer,
            SocketAddr::from(([127, 0, 0, 1], 1)),
            &limits,
            limits.idle_timeout,
        ));
        assert!(matches!(result, Err(ReadError::Refuse(408, _))));
    }
}
