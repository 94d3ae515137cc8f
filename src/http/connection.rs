//! One client connection, watched: what it holds is bounded in time as well as in size.
//!
//! - A connection that has sent part of a request head and not the rest within
//!   `header_timeout` is closed (a client sending a byte a second would otherwise hold a file
//!   descriptor forever); one that sits idle between requests is closed after `idle_timeout`,
//!   which is longer than Google's front ends keep an idle connection to a backend, so that
//!   landfall never closes one they are about to reuse. Neither applies while a request is
//!   being answered: `--request-timeout-secs` bounds that.
//! - hyper refuses some requests itself, before landfall sees them (more headers than it reads,
//!   a `Content-Length` that does not parse), with an empty body. Those answers are given the
//!   documented JSON body on their way out: every refusal says what was wrong.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::http::error::ApiError;

/// Headers a request may carry: Pub/Sub's 100 attributes, the headers Pub/Sub and Cloud Run's
/// front end add, and room to spare. A request with more is refused (431) before routing;
/// one with more than 100 attribute headers reaches the envelope's own check (400).
pub const MAX_HEADERS: usize = 256;

/// How long a connection may take over a request head, and sit idle between requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// What a connection is doing, shared by its reader, its writer and its requests.
#[derive(Debug)]
pub struct Activity {
    epoch: Instant,
    /// Milliseconds since `epoch` of the last byte read or written.
    last: AtomicU64,
    /// Milliseconds since `epoch` (plus one) when the first byte of a request head arrived
    /// that has not reached landfall yet; 0 when there is none.
    head_since: AtomicU64,
    open_requests: AtomicUsize,
    /// HTTP/2 has no request heads to time out: its frames flow between requests.
    http2: AtomicBool,
}

/// Why a connection should be closed now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    HeadTooSlow,
    Idle,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            last: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            open_requests: AtomicUsize::new(0),
            http2: AtomicBool::new(false),
        })
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    fn read(&self, bytes: &[u8]) {
        let now = self.now();
        if self.last.swap(now, Ordering::Relaxed) == 0 && bytes.starts_with(b"PRI * HTTP/2.0") {
            self.http2.store(true, Ordering::Relaxed);
        }
        if self.open_requests.load(Ordering::Acquire) == 0 {
            let _ = self
                .head_since
                .compare_exchange(0, now, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    fn wrote(&self) {
        self.last.store(self.now(), Ordering::Relaxed);
    }

    /// A request has reached landfall; the guard marks it answered when dropped.
    pub fn request(self: &Arc<Self>) -> RequestGuard {
        self.open_requests.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(0, Ordering::Release);
        RequestGuard(self.clone())
    }

    /// Whether the connection has outstayed a limit, as of now.
    pub fn expired(&self, limits: &ConnectionLimits) -> Option<Expired> {
        if self.open_requests.load(Ordering::Acquire) > 0 {
            return None;
        }
        let now = self.now();
        let head_since = self.head_since.load(Ordering::Acquire);
        let http2 = self.http2.load(Ordering::Relaxed);
        if head_since != 0 && !http2 && now - head_since > limits.header_timeout.as_millis() as u64
        {
            return Some(Expired::HeadTooSlow);
        }
        let last = self.last.load(Ordering::Relaxed);
        (now.saturating_sub(last) > limits.idle_timeout.as_millis() as u64).then_some(Expired::Idle)
    }
}

/// Held while a request is being answered.
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.wrote();
        self.0.open_requests.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's socket, reporting its reads and writes to [`Activity`] and giving hyper's
/// own refusals their documented body.
pub struct Watched<IO: DiscardUnread> {
    io: IO,
    activity: Arc<Activity>,
    /// A rewritten answer still to be written, and how much of it is.
    replacement: Option<(Vec<u8>, usize)>,
    /// A refusal was answered: the connection ends after it.
    refused: bool,
}

impl<IO: DiscardUnread> Watched<IO> {
    pub fn new(io: IO, activity: Arc<Activity>) -> Self {
        Self {
            io,
            activity,
            replacement: None,
            refused: false,
        }
    }
}

impl<IO: DiscardUnread + AsyncWrite + Unpin> Watched<IO> {
    /// Writes what is left of a replacement; ready once it is all written.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.replacement {
            if *written == bytes.len() {
                self.replacement = None;
                break;
            }
            match Pin::new(&mut self.io).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Takes a buffer that is one of hyper's own refusals; `Some(len)` when it was taken.
    fn intercept(&mut self, first: &[u8], total: usize) -> Option<usize> {
        let replacement = documented_refusal(first)?;
        self.activity.wrote();
        self.replacement = Some((replacement, 0));
        self.refused = true;
        Some(total)
    }
}

impl<IO: DiscardUnread + AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read(&buf.filled()[before..]);
        }
        result
    }
}

impl<IO: DiscardUnread + AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.drain(cx)?.is_pending() {
            return Poll::Pending;
        }
        if let Some(taken) = self.intercept(buf, buf.len()) {
            let _ = self.drain(cx)?;
            return Poll::Ready(Ok(taken));
        }
        let result = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.drain(cx)?.is_pending() {
            return Poll::Pending;
        }
        let total = bufs.iter().map(|b| b.len()).sum();
        if let Some(first) = bufs.iter().find(|b| !b.is_empty())
            && let Some(taken) = self.intercept(first, total)
        {
            let _ = self.drain(cx)?;
            return Poll::Ready(Ok(taken));
        }
        let result = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.drain(cx)?.is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.drain(cx)?.is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// What a socket can do besides reading and writing: drop what has arrived unread.
pub trait DiscardUnread {
    fn discard_unread(&mut self);
}

impl DiscardUnread for tokio::net::TcpStream {
    /// Reads and drops the input that has arrived: closing a socket with unread input makes
    /// the kernel reset the connection, and the client may lose the answer it was sent.
    fn discard_unread(&mut self) {
        let mut scratch = [0u8; 8192];
        for _ in 0..64 {
            match self.try_read(&mut scratch) {
                Ok(read) if read > 0 => continue,
                _ => break,
            }
        }
    }
}

impl<IO: DiscardUnread> Drop for Watched<IO> {
    fn drop(&mut self) {
        if self.refused {
            self.io.discard_unread();
        }
    }
}

/// hyper's own refusal of a request it could not read (an HTTP/1 error answer with an empty
/// body and no content type: landfall's own answers always have one), rewritten with the
/// documented body. `None` for anything else.
fn documented_refusal(written: &[u8]) -> Option<Vec<u8>> {
    let head_end = written.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&written[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let rest = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))?;
    let status: u16 = rest.get(..3)?.parse().ok()?;
    let headers: Vec<&str> = lines.collect();
    let named = |name: &'static str| -> Vec<&str> {
        headers
            .iter()
            .copied()
            .filter(|h| h.to_ascii_lowercase().starts_with(name))
            .collect()
    };
    let empty = named("content-length:")
        .iter()
        .any(|h| h.eq_ignore_ascii_case("content-length: 0"));
    let typed = !named("content-type:").is_empty();
    if status < 400 || !empty || typed {
        return None;
    }
    let status = StatusCode::from_u16(status).ok()?;
    let error = ApiError::refused_by_http(status, MAX_HEADERS);
    let body = serde_json::json!({"error": error.code(), "message": error.to_string()}).to_string();
    let reason = status.canonical_reason().unwrap_or("Refused");
    let mut answer = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        status.as_u16(),
        body.len()
    );
    for header in named("date:") {
        answer.push_str(header);
        answer.push_str("\r\n");
    }
    answer.push_str("\r\n");
    answer.push_str(&body);
    Some(answer.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_own_refusals_get_the_documented_body_and_nothing_else_is_touched() {
        let refusal = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Fri, 04 Dec 2026 21:00:00 GMT\r\n\r\n";
        let answer = String::from_utf8(documented_refusal(refusal).unwrap()).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains("content-type: application/json"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(head.contains("date: Fri, 04 Dec 2026 21:00:00 GMT"));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"], "headers_too_large");
        let bad = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        let answer = String::from_utf8(documented_refusal(bad).unwrap()).unwrap();
        assert!(
            answer.contains("\"error\":\"malformed_request\""),
            "{answer}"
        );

        for untouched in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n",
            b"\x00\x00\x12\x04\x00\x00\x00\x00\x00",
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n",
        ] {
            assert_eq!(documented_refusal(untouched), None);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_head_and_a_long_idle_expire_an_unanswered_connection_only() {
        let limits = ConnectionLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(620),
        };
        let activity = Activity::new();
        activity.wrote();
        assert_eq!(activity.expired(&limits), None);
        tokio::time::advance(Duration::from_secs(621)).await;
        assert_eq!(activity.expired(&limits), Some(Expired::Idle));

        activity.read(b"POST /pu");
        tokio::time::advance(Duration::from_secs(5)).await;
        activity.read(b"sh HTTP/1.1\r\n");
        assert_eq!(activity.expired(&limits), None, "the head began 5 s ago");
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(activity.expired(&limits), Some(Expired::HeadTooSlow));

        let request = activity.request();
        tokio::time::advance(Duration::from_secs(700)).await;
        assert_eq!(
            activity.expired(&limits),
            None,
            "a request is being answered"
        );
        drop(request);
        assert_eq!(activity.expired(&limits), None, "it was answered just now");

        let http2 = Activity::new();
        http2.read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(
            http2.expired(&limits),
            None,
            "HTTP/2 frames are not a request head"
        );
    }
}
