//! Shared test helpers: a scriptable HTTP server on 127.0.0.1 that records requests, and helpers to run
//! the real binary.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// Parses the body as JSON, gunzipping it first when it is compressed.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|value| value.to_str().ok()).map(str::to_owned)
    }
}

/// A scripted reply.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Respond with this status, headers and body.
    Status(u16, Vec<(String, String)>, String),
    /// Wait this long, then respond with 204.
    Stall(Duration),
}

impl Reply {
    pub fn status(code: u16) -> Reply {
        Reply::Status(code, Vec::new(), String::new())
    }
}

#[derive(Default)]
struct State {
    requests: Vec<RecordedRequest>,
    script: VecDeque<Reply>,
    fallback: Option<Reply>,
}

/// An HTTP server on 127.0.0.1 that records every request and responds from a script, then with 204.
#[derive(Clone)]
pub struct RecordingServer {
    pub address: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl RecordingServer {
    pub async fn start() -> RecordingServer {
        let state = Arc::new(Mutex::new(State::default()));
        let handler_state = state.clone();
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let state = handler_state.clone();
            async move { handle(state, method, uri, headers, body).await }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let address = listener.local_addr().expect("local address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        RecordingServer { address, state }
    }

    /// Queues replies for the next requests, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.lock().unwrap().script.extend(replies);
    }

    /// Sets the reply once the script is used up; 204 when never set.
    pub fn reply_always(&self, reply: Reply) {
        self.state.lock().unwrap().fallback = Some(reply);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.lock().unwrap().requests.clone()
    }
}

async fn handle(state: Arc<Mutex<State>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let reply = {
        let mut state = state.lock().unwrap();
        state.requests.push(RecordedRequest {
            method: method.to_string(),
            path: uri.path().to_owned(),
            headers,
            body: body.to_vec(),
        });
        state.script.pop_front().or_else(|| state.fallback.clone())
    };
    match reply {
        None => StatusCode::NO_CONTENT.into_response(),
        Some(Reply::Stall(duration)) => {
            tokio::time::sleep(duration).await;
            StatusCode::NO_CONTENT.into_response()
        }
        Some(Reply::Status(code, headers, body)) => {
            let mut response = (StatusCode::from_u16(code).expect("valid status"), body).into_response();
            for (name, value) in headers {
                response.headers_mut().insert(
                    axum::http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                    value.parse().expect("header value"),
                );
            }
            response
        }
    }
}

/// Returns the crate root, which is where `cargo test` runs.
pub fn crate_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fixture under the shared fixtures directory beside the repository.
pub fn fixture(relative: &str) -> PathBuf {
    crate_root().join("../shared/fixtures").join(relative)
}

/// The output of one run of the binary.
#[derive(Debug)]
pub struct RunOutput {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl RunOutput {
    /// Returns the `summary:` line printed on standard error.
    pub fn summary_line(&self) -> String {
        self.stderr
            .lines()
            .find(|line| line.starts_with("summary: "))
            .unwrap_or_else(|| panic!("no summary line in stderr:\n{}", self.stderr))
            .to_owned()
    }
}

/// Runs the binary with `args`, feeding `stdin`, and waits at most 60 seconds.
pub async fn run_binary(args: &[&str], stdin: &[u8], envs: &[(&str, &str)]) -> RunOutput {
    use tokio::io::AsyncWriteExt;

    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_optimizely-relay"));
    command
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (name, value) in envs {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("spawn optimizely-relay");
    let mut input = child.stdin.take().expect("stdin is piped");
    let data = stdin.to_vec();
    tokio::spawn(async move {
        let _ = input.write_all(&data).await;
    });
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("optimizely-relay finished within 60 seconds")
        .expect("wait for optimizely-relay");
    RunOutput {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Writes `text` to `name` inside `directory` and returns the path.
pub fn write_file(directory: &Path, name: &str, text: &str) -> PathBuf {
    let path = directory.join(name);
    std::fs::write(&path, text).expect("write test file");
    path
}

/// Reads a file of JSON lines.
pub fn read_json_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(|line| serde_json::from_str(line).expect("JSON line")).collect()
}

/// A log writer that appends to a shared buffer.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures this thread's log lines (all levels) until the guard is dropped. Use it in
/// current-thread tokio tests, where every task runs on the test's thread.
pub fn capture_logs() -> (tracing::subscriber::DefaultGuard, LogBuffer) {
    let buffer = LogBuffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (tracing::subscriber::set_default(subscriber), buffer)
}

/// Returns a directory with Segment's Python library (`segment-analytics-python` 2.4.0), installing it
/// there with pip on first use.
pub fn segment_python_library() -> PathBuf {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let directory = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("python-segment-2.4.0");
    if directory.join("segment/analytics/client.py").exists() {
        return directory;
    }
    let status = std::process::Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target"])
        .arg(&directory)
        .arg("segment-analytics-python==2.4.0")
        .status()
        .expect("run python3 -m pip");
    assert!(status.success(), "installing segment-analytics-python with pip failed; check that PyPI is reachable");
    directory
}

/// Returns a free TCP port on 127.0.0.1. Another process could take it before it is used, which is
/// unlikely within a test.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until something accepts connections on `port`, at most 10 seconds.
pub async fn wait_for_port(port: u16) {
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("nothing listens on 127.0.0.1:{port} after 10 seconds");
}

/// Returns the TOML of an `optimizely` transform `opt` reading `input` with the quickstart datafile, an
/// Event API sink `api` sending to `endpoint` after 50 ms batches, and a file sink writing both
/// components' dead letters to `dead.ndjson` in the working directory.
pub fn quickstart_pipeline(input: &str, endpoint: &str) -> String {
    format!(
        r#"
[transforms.opt]
type = "optimizely"
inputs = ["{input}"]
revenue_unit = "dollars"
[transforms.opt.datafile]
path = "{datafile}"

[sinks.api]
type = "optimizely_events"
inputs = ["opt"]
endpoint = "{endpoint}"
batch.timeout_secs = 0.05

[sinks.dead_letters]
type = "file"
inputs = ["opt.dropped", "api.dropped"]
path = "dead.ndjson"
"#,
        datafile = crate_root().join("config-examples/quickstart-datafile.json").display(),
    )
}
