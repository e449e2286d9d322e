//! The `http_server` source against slow, idle, malformed and too many clients, over real sockets on
//! 127.0.0.1, through the real binary. Every loop here is bounded in count and time.

mod support;

use std::time::{Duration, Instant};

use support::{free_port, wait_for_port, write_file, RecordingServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MAX_CONNECTIONS: usize = 4;

/// Builds a valid track message for the quickstart datafile.
fn track(message_id: &str) -> String {
    format!(
        r#"{{"type":"track","event":"order_completed","userId":"u-1","messageId":"{message_id}","timestamp":"2026-11-30T14:03:27Z"}}"#
    )
}

struct Relay {
    child: tokio::process::Child,
    port: u16,
    _directory: tempfile::TempDir,
}

impl Relay {
    /// Starts a relay whose source allows 4 connections and 1 second for headers and for bodies.
    async fn start(api: &RecordingServer) -> Relay {
        let port = free_port();
        let directory = tempfile::tempdir().unwrap();
        let config = write_file(
            directory.path(),
            "relay.toml",
            &format!(
                r#"
shutdown_timeout_secs = 5

[sources.http]
type = "http_server"
address = "127.0.0.1:{port}"
max_connections = {MAX_CONNECTIONS}
header_read_timeout_secs = 1
body_read_timeout_secs = 1
max_body_bytes = 65536
max_events_per_request = 20

{pipeline}"#,
                pipeline = support::quickstart_pipeline("http", &api.url("/v1/events")),
            ),
        );
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_optimizely-relay"))
            .args(["run", "--config", config.to_str().unwrap()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        wait_for_port(port).await;
        Relay { child, port, _directory: directory }
    }

    /// Posts one message with a new connection and returns the status, failing after 10 seconds.
    async fn post(&self, message_id: &str) -> u16 {
        let client = reqwest::Client::new();
        let request = client.post(format!("http://127.0.0.1:{}/events", self.port)).body(track(message_id));
        let response = tokio::time::timeout(Duration::from_secs(10), request.send())
            .await
            .expect("a well-behaved client is answered within 10 seconds")
            .expect("request succeeds");
        response.status().as_u16()
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(("127.0.0.1", self.port)).await.unwrap()
    }

    /// Stops the relay with SIGTERM within 20 seconds and returns its standard error.
    async fn stop(self) -> String {
        let pid = self.child.id().unwrap().to_string();
        std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let output = tokio::time::timeout(Duration::from_secs(20), self.child.wait_with_output())
            .await
            .expect("the relay stops within 20 seconds")
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "the relay failed:\n{stderr}");
        stderr
    }
}

/// Reads until the server closes the connection, at most `limit`. Returns what was read, or `None`
/// when the connection was still open at the limit.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(received),
            Ok(Ok(count)) => received.extend_from_slice(&buffer[..count]),
        }
    }
}

fn delivered_uuids(api: &RecordingServer) -> Vec<String> {
    let mut uuids = Vec::new();
    for request in api.requests() {
        let body = request.json();
        for visitor in body["visitors"].as_array().unwrap() {
            uuids.push(visitor["snapshots"][0]["events"][0]["uuid"].as_str().unwrap().to_owned());
        }
    }
    uuids.sort();
    uuids
}

#[tokio::test]
async fn stalled_headers_do_not_block_clients() {
    let api = RecordingServer::start().await;
    let relay = Relay::start(&api).await;

    // Slowloris: every connection slot is taken by a client that sends part of its headers and stalls.
    let mut stalled = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        let mut stream = relay.connect().await;
        stream.write_all(b"POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le").await.unwrap();
        stalled.push(stream);
    }

    let started = Instant::now();
    assert_eq!(relay.post("m-after-stall").await, 200);
    assert!(started.elapsed() < Duration::from_secs(5), "served after {:?}", started.elapsed());

    for stream in &mut stalled {
        let closed = read_until_closed(stream, Duration::from_secs(5)).await;
        assert!(closed.is_some(), "the server closes a connection whose headers stall");
    }
    relay.stop().await;
    assert_eq!(delivered_uuids(&api), ["m-after-stall"]);
}

#[tokio::test]
async fn idle_connections_closed() {
    let api = RecordingServer::start().await;
    let relay = Relay::start(&api).await;

    let mut idle = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        idle.push(relay.connect().await);
    }
    // Every slot is taken, so the request waits until the header read timeout closes an idle one.
    let started = Instant::now();
    assert_eq!(relay.post("m-after-idle").await, 200);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(800), "served after {waited:?}, before a slot came free");
    assert!(waited < Duration::from_secs(5), "served after {waited:?}");

    for stream in &mut idle {
        let received = read_until_closed(stream, Duration::from_secs(5)).await;
        assert!(received.is_some(), "the server closes an idle connection");
    }
    relay.stop().await;
}

#[tokio::test]
async fn slow_body_gets_408() {
    let api = RecordingServer::start().await;
    let relay = Relay::start(&api).await;

    let mut stream = relay.connect().await;
    let head = "POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(br#"{"type":"tr"#).await.unwrap();

    let started = Instant::now();
    let received = read_until_closed(&mut stream, Duration::from_secs(5)).await.expect("connection closed");
    let response = String::from_utf8_lossy(&received);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("body_read_timeout_secs"), "{response}");
    assert!(started.elapsed() >= Duration::from_millis(900), "answered after {:?}", started.elapsed());

    assert_eq!(relay.post("m-after-slow-body").await, 200);
    relay.stop().await;
    assert_eq!(delivered_uuids(&api), ["m-after-slow-body"]);
}

#[tokio::test]
async fn garbage_requests_rejected() {
    let api = RecordingServer::start().await;
    let relay = Relay::start(&api).await;

    let long_header = format!("POST /events HTTP/1.1\r\nX-Filler: {}\r\n\r\n", "a".repeat(1024 * 1024));
    let garbage: Vec<Vec<u8>> = vec![
        b"\x00\xff\xfe GARBAGE\r\n\r\n".to_vec(),
        b"POST /events HTTP/9.9\r\n\r\n".to_vec(),
        b"POST /events HTTP/1.1\r\nContent-Length: -5\r\n\r\n".to_vec(),
        b"POST /events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        long_header.into_bytes(),
    ];
    for bytes in &garbage {
        let mut stream = relay.connect().await;
        // A write can fail once the server has rejected the request and closed the connection.
        let _ = stream.write_all(bytes).await;
        let received = read_until_closed(&mut stream, Duration::from_secs(5)).await;
        let response = received.expect("the server closes the connection of a malformed request");
        let text = String::from_utf8_lossy(&response);
        assert!(!text.starts_with("HTTP/1.1 2"), "{:?} was answered {text}", String::from_utf8_lossy(bytes));
    }

    assert_eq!(relay.post("m-after-garbage").await, 200);
    relay.stop().await;
    assert_eq!(delivered_uuids(&api), ["m-after-garbage"]);
}

#[tokio::test]
async fn connection_flood_served_in_turn() {
    let api = RecordingServer::start().await;
    let relay = Relay::start(&api).await;

    const CLIENTS: usize = 48;
    let mut clients = tokio::task::JoinSet::new();
    for index in 0..CLIENTS {
        let port = relay.port;
        clients.spawn(async move {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            let body = track(&format!("m-flood-{index:02}"));
            let request = format!(
                "POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(request.as_bytes()).await.unwrap();
            read_until_closed(&mut stream, Duration::from_secs(15)).await
        });
    }

    let mut answered = 0;
    while let Some(result) = clients.join_next().await {
        let response = result.unwrap().expect("every client is answered and its connection closed");
        let text = String::from_utf8_lossy(&response);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        answered += 1;
    }
    assert_eq!(answered, CLIENTS);

    relay.stop().await;
    let expected: Vec<String> = (0..CLIENTS).map(|index| format!("m-flood-{index:02}")).collect();
    assert_eq!(delivered_uuids(&api), expected);
}

#[tokio::test]
async fn too_many_events_get_413() {
    let api = RecordingServer::start().await;
    let relay = Relay::start(&api).await;
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{}/events", relay.port);

    let lines: Vec<String> = (0..21).map(|index| track(&format!("m-many-{index:02}"))).collect();
    let response = client.post(&url).body(lines.join("\n")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 413);
    let body = response.text().await.unwrap();
    assert!(body.contains("21 events, more than max_events_per_request (20)"), "{body}");

    let response = client.post(&url).body(lines[..20].join("\n")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    relay.stop().await;
    assert_eq!(delivered_uuids(&api).len(), 20);
}

#[tokio::test]
async fn shutdown_not_held_by_stalled_client() {
    let api = RecordingServer::start().await;
    let relay = Relay::start(&api).await;

    let mut stalled = relay.connect().await;
    stalled.write_all(b"POST /events HTTP/1.1\r\nContent-Length: 50\r\n\r\n{").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    let stderr = relay.stop().await;
    assert!(started.elapsed() < Duration::from_secs(5), "stopped after {:?}", started.elapsed());
    let summary = stderr.lines().find(|line| line.starts_with("summary: ")).unwrap_or_default().to_owned();
    assert_eq!(summary, "summary: received=0 sent=0 dead_lettered=0 skipped=0 undelivered=0");
}
