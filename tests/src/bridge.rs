//! Connects the headless proxy's HTTP callouts to real servers: each callout the filter
//! dispatches is sent over TCP (plain HTTP/1.1) to the address its cluster names, on a thread of
//! its own, so a long-poll held open by the control plane does not stop the proxy's clock,
//! ticks or requests. The test delivers answers as they arrive, as Envoy's event loop would.

use crate::host::{FilterHost, PendingHttpCall};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::Duration;

/// Largest response the bridge reads: a snapshot's maximum plus headers.
const MAX_RESPONSE_BYTES: usize = 130 * 1024 * 1024;

/// A plain HTTP/1.1 response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// One request over a fresh connection (`Connection: close`). `headers` may carry the
/// pseudo-headers `:method`, `:path` and `:authority`, as proxy-wasm callouts do.
pub fn send(
    address: SocketAddr,
    headers: &[(String, String)],
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<Response> {
    let find = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let method = find(":method").unwrap_or("GET");
    let path = find(":path").unwrap_or("/");
    let authority = find(":authority").map_or_else(|| address.to_string(), str::to_string);
    let mut request = format!("{method} {path} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\n");
    for (name, value) in headers.iter().filter(|(n, _)| !n.starts_with(':')) {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method != "GET" {
        request.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    stream.write_all(request.as_bytes())?;
    stream.write_all(body)?;
    read_response(BufReader::new(stream))
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

fn read_response(mut reader: impl BufRead) -> std::io::Result<Response> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| invalid("no HTTP status line"))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed.split_once(':').ok_or_else(|| invalid("header line without ':'"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| invalid("bad chunk size"))?;
            if size == 0 {
                break;
            }
            if body.len() + size > MAX_RESPONSE_BYTES {
                return Err(invalid("response too large"));
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            line.clear();
            reader.read_line(&mut line)?;
        }
    } else if let Some(len) = header("content-length") {
        let len: usize = len.parse().map_err(|_| invalid("bad content-length"))?;
        if len > MAX_RESPONSE_BYTES {
            return Err(invalid("response too large"));
        }
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    } else {
        reader.take(MAX_RESPONSE_BYTES as u64).read_to_end(&mut body)?;
    }
    Ok(Response { status, headers, body })
}

/// One callout's answer as the filter received it, for measuring what travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    /// The callout's `:path`.
    pub path: String,
    pub status: u16,
    pub content_type: Option<String>,
    pub body_bytes: usize,
}

type Outcome = (u32, String, Option<Response>);

/// Callouts in flight, answered by real servers.
pub struct CalloutBridge {
    clusters: HashMap<String, SocketAddr>,
    sender: Sender<Outcome>,
    receiver: Receiver<Outcome>,
    in_flight: usize,
    answered: Vec<Answered>,
}

impl CalloutBridge {
    /// `clusters`: Envoy cluster name → address. A callout to any other cluster fails, as
    /// Envoy fails a callout to an unknown cluster.
    pub fn new(clusters: &[(&str, SocketAddr)]) -> Self {
        let (sender, receiver) = channel();
        CalloutBridge {
            clusters: clusters.iter().map(|(n, a)| (n.to_string(), *a)).collect(),
            sender,
            receiver,
            in_flight: 0,
            answered: Vec::new(),
        }
    }

    /// Sends every callout `host` dispatched since the last call.
    pub fn dispatch(&mut self, host: &mut FilterHost) {
        for call in host.take_http_calls() {
            self.start(call);
        }
    }

    fn start(&mut self, call: PendingHttpCall) {
        let sender = self.sender.clone();
        let address = self.clusters.get(&call.upstream).copied();
        self.in_flight += 1;
        std::thread::spawn(move || {
            let timeout = Duration::from_millis(u64::from(call.timeout_ms.max(1)));
            let response = address.and_then(|a| send(a, &call.headers, &call.body, timeout).ok());
            let path = call.headers.iter().find(|(n, _)| n == ":path").map(|(_, v)| v.clone()).unwrap_or_default();
            let _ = sender.send((call.token, path, response));
        });
    }

    /// Delivers every answer that has arrived; returns how many.
    pub fn deliver(&mut self, host: &mut FilterHost) -> anyhow::Result<usize> {
        let mut delivered = 0;
        while let Ok((token, path, response)) = self.receiver.try_recv() {
            self.in_flight -= 1;
            delivered += 1;
            match response {
                Some(r) => {
                    self.answered.push(Answered {
                        path,
                        status: r.status,
                        content_type: r.header("content-type").map(str::to_string),
                        body_bytes: r.body.len(),
                    });
                    let status = r.status.to_string();
                    let mut headers: Vec<(&str, &str)> = vec![(":status", status.as_str())];
                    headers.extend(r.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
                    host.respond_http_call(token, &headers, &r.body)?;
                }
                None => host.fail_http_call(token)?,
            }
        }
        Ok(delivered)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The answers delivered since the last call (failed callouts are not answers).
    pub fn take_answered(&mut self) -> Vec<Answered> {
        std::mem::take(&mut self.answered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse_by_length_chunks_or_close() {
        let by_length = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nETag: \"7\"\r\n\r\nabcEXTRA";
        let r = read_response(&by_length[..]).unwrap();
        assert_eq!((r.status, r.body.as_slice(), r.header("etag")), (200, &b"abc"[..], Some("\"7\"")));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\n";
        assert_eq!(read_response(&chunked[..]).unwrap().body, b"abcde");
        let closed = b"HTTP/1.1 304 Not Modified\r\n\r\n";
        let r = read_response(&closed[..]).unwrap();
        assert_eq!((r.status, r.body.len()), (304, 0));
        assert!(read_response(&b"garbage\r\n\r\n"[..]).is_err());
        assert!(read_response(&b"HTTP/1.1 200 OK\r\nContent-Length: 9999999999\r\n\r\n"[..]).is_err());
    }
}
