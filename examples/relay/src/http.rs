//! A deliberately small HTTP/1.x responder for the loopback metrics and
//! admin ports: one request per connection (`Connection: close`), bounded
//! head and body, a read timeout, and a cap on simultaneous connections.
//! No keep-alive, no chunked bodies, no TLS.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

/// Request line and headers, at most.
const MAX_HEAD: usize = 8 * 1024;
/// Request body, at most.
const MAX_BODY: usize = 64 * 1024;
/// The whole request must arrive within this, and the response leave.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Simultaneous connections.
const MAX_CONNECTIONS: usize = 16;

/// One parsed request.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) method: String,
    /// Path without the query.
    pub(crate) path: String,
    pub(crate) query: String,
    /// Header names lower-cased.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Request {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter (no percent-decoding: values here are flags).
    pub(crate) fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

/// One response.
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) body: Vec<u8>,
}

impl Response {
    pub(crate) fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.as_bytes().to_vec(),
        }
    }

    pub(crate) fn json(status: u16, value: &serde_json::Value) -> Response {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
        body.push(b'\n');
        Response {
            status,
            content_type: "application/json",
            body,
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Serve `handler` on `socket` until `stop` turns true.
pub(crate) async fn serve<F, Fut>(socket: TcpListener, mut stop: watch::Receiver<bool>, handler: F)
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    let handler = Arc::new(handler);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            r = socket.accept() => r,
            _ = stop.wait_for(|v| *v) => break,
        };
        let Ok((tcp, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Over the cap: refuse rather than queue.
            tokio::spawn(async move {
                let mut tcp = tcp;
                let busy = Response::text(503, "busy\n");
                let _ = tokio::time::timeout(IO_TIMEOUT, write_response(&mut tcp, &busy)).await;
            });
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut tcp = tcp;
            let response = match tokio::time::timeout(IO_TIMEOUT, read_request(&mut tcp)).await {
                Ok(Ok(req)) => handler(req).await,
                Ok(Err(resp)) => resp,
                Err(_) => return,
            };
            // A client that does not read must not keep its slot.
            let _ = tokio::time::timeout(IO_TIMEOUT, write_response(&mut tcp, &response)).await;
        });
    }
}

async fn write_response(tcp: &mut TcpStream, r: &Response) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    tcp.write_all(head.as_bytes()).await?;
    tcp.write_all(&r.body).await?;
    tcp.shutdown().await
}

async fn read_request(tcp: &mut TcpStream) -> Result<Request, Response> {
    let bad = |m: &str| Response::text(400, m);
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD {
            return Err(Response::text(413, "request head too large\n"));
        }
        let n = tcp
            .read(&mut chunk)
            .await
            .map_err(|_| bad("read error\n"))?;
        if n == 0 {
            return Err(bad("incomplete request\n"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    if head_end > MAX_HEAD {
        return Err(Response::text(413, "request head too large\n"));
    }
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| bad("head is not UTF-8\n"))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("bad request line\n"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(bad("HTTP/1.x only\n"));
    }
    let mut headers = Vec::new();
    for line in lines {
        let Some((n, v)) = line.split_once(':') else {
            return Err(bad("bad header line\n"));
        };
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut req = Request {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        body: Vec::new(),
    };
    if req.header("transfer-encoding").is_some() {
        return Err(bad("chunked bodies are not supported\n"));
    }
    let len: usize = match req.header("content-length") {
        None => 0,
        Some(v) => v.parse().map_err(|_| bad("bad Content-Length\n"))?,
    };
    if len > MAX_BODY {
        return Err(Response::text(413, "body too large\n"));
    }
    let mut body = buf.split_off(head_end + 4);
    while body.len() < len {
        let n = tcp
            .read(&mut chunk)
            .await
            .map_err(|_| bad("read error\n"))?;
        if n == 0 {
            return Err(bad("incomplete body\n"));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    req.body = body;
    Ok(req)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
