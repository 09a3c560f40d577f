//! The API's listener: TCP connections whose answers are problem+json even when the request
//! never reached the router.
//!
//! hyper answers a request it cannot parse (a control character such as 0x7f in a header, a
//! header section that is too large, a malformed request line) itself, with a bare status line
//! and `content-length: 0`, and closes the connection. Every error of this API is
//! `application/problem+json` with a stable `code`, so the connection type here recognises
//! those canned answers as hyper writes them and sends a problem in their place. The router
//! never writes a bodiless 400 or 431, so nothing of ours can be mistaken for one.

use crate::error::Code;
use crate::http::error::problem;
use axum::serve::Listener;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// A [`TcpListener`] whose connections are [`ProblemStream`]s.
pub struct ApiListener(pub TcpListener);

impl Listener for ApiListener {
    type Io = ProblemStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, addr) = Listener::accept(&mut self.0).await;
        (
            ProblemStream {
                inner: stream,
                pending: Vec::new(),
            },
            addr,
        )
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Listener::local_addr(&self.0)
    }
}

/// A connection that replaces hyper's bodiless error answers with problem+json ones.
pub struct ProblemStream {
    inner: TcpStream,
    /// A replacement answer still to be written.
    pending: Vec<u8>,
}

/// hyper's own answers to a request it could not read, by the status line they start with:
/// the problem's status line, code and detail (its status and title are the code's, which
/// are those of the status line).
const CANNED: [(&str, Code, &str); 3] = [
    (
        "HTTP/1.1 400 Bad Request\r\n",
        Code::MalformedRequest,
        "the request could not be read: a header holds a control character (0x00-0x1f, 0x7f) \
         or the request line or headers are malformed",
    ),
    (
        "HTTP/1.1 431 Request Header Fields Too Large\r\n",
        Code::HeadersTooLarge,
        "the request's headers are too large",
    ),
    (
        "HTTP/1.1 414 URI Too Long\r\n",
        Code::UriTooLong,
        "the request's URI is too long",
    ),
];

/// The problem to send instead of `head`, if `head` is one of hyper's canned error answers.
fn replacement(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    if !text.ends_with("\r\n\r\n") || !text.contains("\r\ncontent-length: 0\r\n") {
        return None;
    }
    let (status_line, code, detail) = CANNED.iter().find(|(line, ..)| text.starts_with(line))?;
    let (status, title, _) = problem(*code);
    let body = serde_json::json!({
        "type": format!("urn:recovery-info:problem:{code}"),
        "title": title,
        "status": status.as_u16(),
        "code": code.as_str(),
        "detail": detail,
    })
    .to_string();
    // hyper's other headers (date, connection: close) stay as it wrote them.
    let headers: String = text
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty() && !l.starts_with("content-length:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    Some(
        format!(
            "{status_line}{headers}content-type: application/problem+json\r\n\
             x-content-type-options: nosniff\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl ProblemStream {
    /// Writes what is pending; ready when nothing is left.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for ProblemStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ProblemStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        // hyper writes a canned answer's head in one buffer (writes are not vectored here).
        if let Some(problem) = replacement(buf) {
            self.pending = problem;
            // Taken whole: the replacement goes out with the next write, flush or shutdown.
            let _ = self.drain(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    /// Not vectored, so that hyper flattens an answer's head into one write.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_canned_answers_become_problems_and_nothing_else_does() {
        let canned = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 15:45:15 GMT\r\n\r\n";
        let problem = String::from_utf8(replacement(canned).unwrap()).unwrap();
        let (head, body) = problem.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(head.contains("content-type: application/problem+json"));
        assert!(head.contains("connection: close") && head.contains("date: "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["code"], "malformed_request");
        assert_eq!(body["status"], 400);
        // Our own answers carry bodies; a head with a length is not canned.
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: 120\r\n\r\n";
        assert!(replacement(ours).is_none());
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert!(replacement(ok).is_none());
    }

    #[test]
    fn a_replaced_answer_keeps_the_status_and_title_of_hypers_status_line() {
        for (status_line, code, _) in CANNED {
            let (status, title, _) = problem(code);
            assert_eq!(
                status_line.trim_end(),
                format!("HTTP/1.1 {} {title}", status.as_u16()),
                "{code}"
            );
        }
    }
}
