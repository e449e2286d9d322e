//! End-to-end throughput of the release binary: generated Segment messages on standard input →
//! `optimizely` transform → `optimizely_events` sink → a local server that accepts and discards the
//! requests. Prints events per second, bytes per second, CPU seconds and peak RSS of the relay.
//!
//!     cargo bench --bench end_to_end -- --events 1000000
//!
//! `--events N` sets the number of messages (default 1,000,000); `--seed S` the generator's seed.
//! `--save-input PATH` writes the generated NDJSON to PATH and exits without running the relay, for
//! profiling the relay on the same input.

mod workload;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::http::StatusCode;

fn argument(name: &str, default: u64) -> u64 {
    let arguments: Vec<String> = std::env::args().collect();
    arguments
        .iter()
        .position(|argument| argument == name)
        .and_then(|index| arguments.get(index + 1))
        .and_then(|value| value.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn text_argument(name: &str) -> Option<String> {
    let arguments: Vec<String> = std::env::args().collect();
    let index = arguments.iter().position(|argument| argument == name)?;
    arguments.get(index + 1).cloned()
}

/// Starts a server on 127.0.0.1 that answers 204 to every request; returns its address and a counter
/// of request body bytes.
fn start_discarding_server(runtime: &tokio::runtime::Runtime) -> (SocketAddr, Arc<AtomicU64>) {
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind 127.0.0.1:0");
    let address = listener.local_addr().expect("local address");
    let app = axum::Router::new().fallback(move |body: Bytes| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(body.len() as u64, Ordering::Relaxed);
            StatusCode::NO_CONTENT
        }
    });
    runtime.spawn(async move { axum::serve(listener, app).await });
    (address, received)
}

/// Returns the processor's model and clock from `/proc/cpuinfo`, or "processor unknown" elsewhere.
/// The same build's figures differ by more than a factor of two between machines that both report
/// 2 cores, so the figures need the processor beside them.
fn processor_model() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_once(':'))
            .map(|(_, value)| value.trim().to_owned())
    };
    match (field("model name"), field("cpu MHz")) {
        (Some(model), Some(megahertz)) => format!("{model} at {megahertz} MHz"),
        (Some(model), None) => model,
        _ => "processor unknown".to_owned(),
    }
}

fn main() {
    let events = argument("--events", 1_000_000) as usize;
    let seed = argument("--seed", 7);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let (address, received_bytes) = start_discarding_server(&runtime);

    let directory = tempfile::tempdir().expect("temporary directory");
    let input_path = directory.path().join("events.ndjson");
    let input = workload::generate(events, seed);
    if let Some(path) = text_argument("--save-input") {
        std::fs::write(&path, &input).expect("write the input to --save-input");
        return;
    }
    std::fs::write(&input_path, &input).expect("write the input");
    let input_bytes = input.len();
    // Freed before the relay is spawned: a child's peak RSS as `getrusage` reports it includes the
    // parent's pages until `exec`, so a large input held here would show up as the relay's memory.
    drop(input);
    let datafile = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config-examples/quickstart-datafile.json");
    let config_path = directory.path().join("relay.toml");
    let mut config = std::fs::File::create(&config_path).expect("create the configuration");
    write!(
        config,
        r#"
[sources.in]
type = "stdin"

[transforms.opt]
type = "optimizely"
inputs = ["in"]
revenue_unit = "dollars"
[transforms.opt.datafile]
path = "{datafile}"
[transforms.opt.event_keys]
"Order Completed" = "order_completed"
"Signed Up" = "signed_up"

[sinks.api]
type = "optimizely_events"
inputs = ["opt"]
endpoint = "http://{address}/v1/events"

[sinks.dead_letters]
type = "file"
inputs = ["opt.dropped", "api.dropped"]
path = "{dead_letters}"
"#,
        datafile = datafile.display(),
        dead_letters = directory.path().join("dead.ndjson").display(),
    )
    .expect("write the configuration");

    let started = Instant::now();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_optimizely-relay"))
        .args(["--log-level", "warn", "run", "--config", config_path.to_str().unwrap()])
        .stdin(std::fs::File::open(&input_path).expect("open the input"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run optimizely-relay");
    let samples = sample_memory(child.id());
    let output = child.wait_with_output().expect("wait for optimizely-relay");
    let elapsed = started.elapsed().as_secs_f64();
    let samples = samples.join().unwrap_or_default();
    let usage = children_usage();

    let stderr = String::from_utf8_lossy(&output.stderr);
    let summary = stderr.lines().find(|line| line.starts_with("summary: ")).unwrap_or("summary: missing");
    assert!(output.status.success(), "the relay failed:\n{stderr}");
    println!(
        "machine:        {} cores, {}",
        std::thread::available_parallelism().map_or(0, |cores| cores.get()),
        processor_model()
    );
    println!("events:         {events} ({:.1} MB of NDJSON, seed {seed})", input_bytes as f64 / 1e6);
    println!("{summary}");
    println!("wall time:      {elapsed:.2} s");
    println!(
        "throughput:     {:.0} events/s, {:.1} MB/s in",
        events as f64 / elapsed,
        input_bytes as f64 / 1e6 / elapsed
    );
    println!("sent:           {:.1} MB of request bodies", received_bytes.load(Ordering::Relaxed) as f64 / 1e6);
    println!("relay CPU:      {:.2} s user + {:.2} s system", usage.0, usage.1);
    // One sample can come before the relay's `exec`, so a run shorter than the sampling interval
    // reports getrusage's figure instead.
    match samples.iter().map(|sample| sample.2).max().filter(|_| samples.len() >= 2) {
        Some(high_water) => {
            println!("relay peak RSS: {:.1} MB (VmHWM of the relay process)", high_water as f64 / 1024.0)
        }
        None => {
            println!(
                "relay peak RSS: {:.1} MB (getrusage, because the run was too short to sample)",
                usage.2 as f64 / 1024.0
            )
        }
    }
    let timeline: Vec<String> = samples
        .iter()
        .step_by(5)
        .map(|(seconds, rss, _)| format!("{seconds:.0}s:{:.0}", *rss as f64 / 1024.0))
        .collect();
    println!("relay RSS (MB) every second: {}", timeline.join(" "));
}

/// Samples the RSS and peak RSS (KiB) of process `pid` from /proc every 200 ms until it exits.
fn sample_memory(pid: u32) -> std::thread::JoinHandle<Vec<(f64, u64, u64)>> {
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut samples = Vec::new();
        let field = |status: &str, name: &str| -> Option<u64> {
            let line = status.lines().find(|line| line.starts_with(name))?;
            line.split_whitespace().nth(1)?.parse().ok()
        };
        while let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            match (field(&status, "VmRSS:"), field(&status, "VmHWM:")) {
                (Some(rss), Some(high_water)) => samples.push((started.elapsed().as_secs_f64(), rss, high_water)),
                _ => break,
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        samples
    })
}

/// Returns user and system CPU seconds and peak RSS in KiB of the finished child processes. The
/// peak RSS includes pages of this process from before `exec`; the /proc samples measure the relay.
fn children_usage() -> (f64, f64, i64) {
    // SAFETY: `getrusage` writes into the zeroed struct it is given and reads nothing else.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    (seconds(usage.ru_utime), seconds(usage.ru_stime), usage.ru_maxrss)
}
