//! Endpoints that fail below HTTP, for the tests that check that no secret rides out on a
//! network error: a closed port (connection refused), a name that cannot resolve (`.invalid`),
//! a TLS handshake against a plain-TCP listener, and a server that reads the whole request,
//! starts its answer and resets the connection in the middle of it. Loopback only.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// How the endpoint fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Refused,
    Unresolvable,
    Tls,
    Reset,
}

impl Failure {
    pub const ALL: [Failure; 4] = [
        Failure::Refused,
        Failure::Unresolvable,
        Failure::Tls,
        Failure::Reset,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Failure::Refused => "connection refused",
            Failure::Unresolvable => "DNS failure",
            Failure::Tls => "TLS failure",
            Failure::Reset => "reset mid-response",
        }
    }
}

/// One failing endpoint; the listeners live as long as it does.
pub struct Unreachable {
    pub failure: Failure,
    /// Base URL to configure as the endpoint.
    pub url: String,
    received: Arc<Mutex<Vec<String>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Unreachable {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Unreachable {
    pub async fn start(failure: Failure) -> Unreachable {
        let received = Arc::new(Mutex::new(Vec::new()));
        let (url, task) = match failure {
            Failure::Refused => {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                (format!("http://{}", l.local_addr().unwrap()), None)
            }
            Failure::Unresolvable => ("http://acr-endpoint.invalid".to_owned(), None),
            Failure::Tls => {
                let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let url = format!("https://{}", l.local_addr().unwrap());
                let task = tokio::spawn(async move {
                    while let Ok((mut s, _)) = l.accept().await {
                        tokio::spawn(async move {
                            let _ = s
                                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                                .await;
                        });
                    }
                });
                (url, Some(task))
            }
            Failure::Reset => {
                let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let url = format!("http://{}", l.local_addr().unwrap());
                let sink = received.clone();
                let task = tokio::spawn(async move {
                    while let Ok((s, _)) = l.accept().await {
                        let sink = sink.clone();
                        tokio::spawn(async move {
                            if let Some(request) = reset_mid_response(s).await {
                                sink.lock().unwrap().push(request);
                            }
                        });
                    }
                });
                (url, Some(task))
            }
        };
        Unreachable {
            failure,
            url,
            received,
            task,
        }
    }

    /// One endpoint of each kind.
    pub async fn all() -> Vec<Unreachable> {
        let mut out = Vec::new();
        for f in Failure::ALL {
            out.push(Unreachable::start(f).await);
        }
        out
    }

    /// The requests the reset server read in full before it reset the connection.
    pub fn received(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }
}

/// Reads one request (headers and `Content-Length` body), sends the start of a JSON answer
/// and resets the connection (`SO_LINGER` 0). Returns the request as text.
async fn reset_mid_response(mut s: tokio::net::TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())
                        .flatten()
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                break;
            }
        }
    }
    let _ = s
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{\"RequestId\":\"")
        .await;
    let _ = s.flush().await;
    let _ = s.set_zero_linger();
    drop(s);
    Some(String::from_utf8_lossy(&buf).into_owned())
}
