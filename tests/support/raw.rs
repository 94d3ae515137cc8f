//! HTTP written by hand on a plain socket, for what no HTTP client will send: a malformed
//! `Content-Length`, a head sent a byte at a time.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Sends `request` as it is and reads the answer until the server closes the connection or
/// stops sending for two seconds; the answer's status and its body, parsed as JSON. On a
/// thread of its own: the server may run on the test's runtime.
pub async fn exchange(address: &str, request: &[u8]) -> (u16, serde_json::Value) {
    let (address, request) = (address.to_string(), request.to_vec());
    tokio::task::spawn_blocking(move || exchange_blocking(&address, &request))
        .await
        .unwrap()
}

fn exchange_blocking(address: &str, request: &[u8]) -> (u16, serde_json::Value) {
    let mut stream = TcpStream::connect(address.trim_start_matches("http://")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 8192];
    while let Ok(read) = stream.read(&mut buffer) {
        if read == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..read]);
        if complete(&answer) {
            break;
        }
    }
    let text = String::from_utf8_lossy(&answer).to_string();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no answer: {text:?}"));
    let status = head[9..12].parse().unwrap();
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, body)
}

/// Whether a response with a `content-length` has all of its body.
fn complete(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .and_then(|n| n.trim().parse::<usize>().ok())
        })
        .is_some_and(|length| body.len() >= length)
}
