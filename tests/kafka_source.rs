//! The `kafka` source against a real Kafka-protocol broker (tansu, in memory, on 127.0.0.1): consumer
//! groups sharing partitions, a relay killed with SIGKILL, restarts from committed offsets, and
//! dead-letter records that carry a message's topic, partition and offset.
//!
//! The tests need the `tansu` binary: `cargo install tansu --version 0.6.0 --locked --features
//! dynostore` (`bash .ci/run` installs it when it is missing).

mod support;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext, Message};
use support::{write_file, RecordingServer};

/// How long a test waits for an expected state at most.
const WAIT: Duration = Duration::from_secs(60);

/// Librdkafka settings that make group membership changes quick: a member that stops sending
/// heartbeats is removed after 6 seconds.
const FAST_GROUP_OPTIONS: &str = r#"
"session.timeout.ms" = 6000
"heartbeat.interval.ms" = 500
"topic.metadata.refresh.interval.ms" = 1000
"#;

/// Returns the path of the `tansu` binary, or fails the test with the command that installs it.
fn tansu_binary() -> PathBuf {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).map(|directory| directory.join("tansu")).collect())
        .unwrap_or_default();
    if let Some(cargo_home) = std::env::var_os("CARGO_HOME") {
        candidates.push(PathBuf::from(cargo_home).join("bin/tansu"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".cargo/bin/tansu"));
    }
    candidates.into_iter().find(|path| path.is_file()).unwrap_or_else(|| {
        panic!(
            "the Kafka tests need the tansu broker, which is not installed; install it with \
             `cargo install tansu --version 0.6.0 --locked --features dynostore` (bash .ci/run does this)"
        )
    })
}

/// A tansu broker with in-memory storage on a free port of 127.0.0.1, killed by its PID on drop.
struct Broker {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Broker {
    fn start(directory: &Path) -> Broker {
        let port = support::free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let log = directory.join("broker.log");
        let child = Command::new(tansu_binary())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("SCHEMA_REGISTRY")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(directory.join("broker.stderr")).unwrap())
            .spawn()
            .expect("start tansu");
        let broker = Broker { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on 127.0.0.1:{port} within 20 seconds");
            std::thread::sleep(Duration::from_millis(50));
        }
        broker
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn create_topic(&self, name: &str, partitions: u32) {
        let mut child = Command::new(tansu_binary())
            .args(["topic", "create", name, "--partitions", &partitions.to_string()])
            .args(["--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run tansu topic create");
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("tansu topic create {name} did not finish within 20 seconds");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let output = child.wait_with_output().unwrap();
        assert!(
            status.success(),
            "tansu topic create {name} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect();
            eprintln!("broker log {} (last 60 lines):\n{}", self.log.display(), tail.join("\n"));
        }
    }
}

/// Records the partition and offset of every delivered message by key.
#[derive(Default)]
struct DeliveryLog(Mutex<HashMap<String, (i32, i64)>>);

impl ClientContext for DeliveryLog {}

impl ProducerContext for DeliveryLog {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let message = result.as_ref().expect("the broker accepted the message");
        let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
        self.0.lock().unwrap().insert(key, (message.partition(), message.offset()));
    }
}

/// A producer that sends messages to explicit partitions and waits for each batch's acknowledgement.
struct TestProducer {
    producer: BaseProducer<DeliveryLog>,
}

impl TestProducer {
    fn new(broker: &Broker) -> TestProducer {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", broker.address())
            .set("message.timeout.ms", "20000")
            .set("linger.ms", "5")
            .create_with_context(DeliveryLog::default())
            .expect("create the test producer");
        TestProducer { producer }
    }

    /// Sends `(partition, key, value)` messages and waits until the broker acknowledged all of them.
    fn send(&self, topic: &str, messages: &[(i32, String, String)]) {
        for (partition, key, value) in messages {
            let record = BaseRecord::to(topic).partition(*partition).key(key.as_str()).payload(value.as_str());
            self.producer.send(record).map_err(|(error, _)| error).expect("queue a message");
            self.producer.poll(Duration::ZERO);
        }
        self.producer.flush(Duration::from_secs(30)).expect("the broker acknowledged every message within 30 seconds");
    }

    /// Returns the partition and offset the broker gave the message with `key`.
    fn position(&self, key: &str) -> (i32, i64) {
        self.producer.context().0.lock().unwrap()[key]
    }
}

/// A Segment track message whose messageId, and so uuid, is `m-<index>`.
fn track(index: usize) -> String {
    format!(
        r#"{{"type":"track","event":"order_completed","userId":"u-{index}","messageId":"m-{index}","timestamp":"2026-12-01T00:00:00Z"}}"#
    )
}

/// Track messages `range`, spread over `partitions` partitions.
fn tracks(range: std::ops::Range<usize>, partitions: i32) -> Vec<(i32, String, String)> {
    range.map(|index| ((index as i32) % partitions, format!("k-{index}"), track(index))).collect()
}

fn expected_uuids(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|index| format!("m-{index}")).collect()
}

/// Counts the conversions the Event API stand-in received, by uuid.
fn uuid_counts(api: &RecordingServer) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for request in api.requests() {
        for visitor in request.json()["visitors"].as_array().unwrap() {
            let uuid = visitor["snapshots"][0]["events"][0]["uuid"].as_str().unwrap().to_owned();
            *counts.entry(uuid).or_default() += 1;
        }
    }
    counts
}

fn missing(counts: &HashMap<String, usize>, expected: &[String]) -> Vec<String> {
    expected.iter().filter(|uuid| !counts.contains_key(*uuid)).cloned().collect()
}

/// Polls `condition` every 50 ms until it holds, failing with `what` after [`WAIT`].
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out after {WAIT:?} waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One relay process, its standard error going to a file.
struct Relay {
    child: tokio::process::Child,
    log: PathBuf,
}

impl Relay {
    fn start(config: &Path, log: PathBuf) -> Relay {
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_optimizely-relay"))
            .args(["run", "--config", config.to_str().unwrap(), "--log-level", "optimizely_relay=debug,info"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn optimizely-relay");
        Relay { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Returns the partitions the relay holds, from its log of assignments and revocations (which
    /// list only the partitions that change under the cooperative protocol).
    fn held_partitions(&self) -> BTreeSet<String> {
        let mut held = BTreeSet::new();
        for line in self.log().lines() {
            let assigned = line.contains("partitions assigned");
            if !assigned && !line.contains("partitions revoked") {
                continue;
            }
            let value = line.split("partitions=").nth(1).unwrap_or_default();
            let partitions = value.split_whitespace().next().unwrap_or_default();
            for partition in partitions.split(',').filter(|partition| !partition.is_empty()) {
                if assigned {
                    held.insert(partition.to_owned());
                } else {
                    held.remove(partition);
                }
            }
        }
        held
    }

    fn sigkill(&mut self) {
        let pid = self.child.id().expect("the relay is running").to_string();
        assert!(Command::new("kill").args(["-KILL", &pid]).status().unwrap().success());
    }

    /// Stops the relay with SIGTERM and returns its summary line after checking that it exited 0.
    async fn terminate(mut self) -> String {
        let pid = self.child.id().expect("the relay is running").to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the relay stopped within 30 seconds of SIGTERM")
            .unwrap();
        let log = self.log();
        assert!(status.success(), "the relay exited with {status}:\n{log}");
        log.lines()
            .find(|line| line.starts_with("summary: "))
            .unwrap_or_else(|| panic!("no summary:\n{log}"))
            .to_owned()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("relay log {}:\n{}", self.log.display(), self.log());
        }
    }
}

struct Setup {
    directory: tempfile::TempDir,
    broker: Broker,
    api: RecordingServer,
}

impl Setup {
    async fn start(topic: &str, partitions: u32) -> Setup {
        let directory = tempfile::tempdir().unwrap();
        let broker = Broker::start(directory.path());
        broker.create_topic(topic, partitions);
        let api = RecordingServer::start().await;
        Setup { directory, broker, api }
    }

    /// Writes a relay configuration reading `topic` in group `group`, with `extra` source options
    /// and `properties` added to the librdkafka options.
    fn config(&self, name: &str, topic: &str, group: &str, extra: &str, properties: &str) -> PathBuf {
        write_file(
            self.directory.path(),
            name,
            &format!(
                r#"
shutdown_timeout_secs = 10

[sources.kafka]
type = "kafka"
bootstrap_servers = "{bootstrap}"
topics = ["{topic}"]
group_id = "{group}"
revoke_timeout_secs = 5
{extra}
[sources.kafka.librdkafka_options]
{FAST_GROUP_OPTIONS}
{properties}

[transforms.opt]
type = "optimizely"
inputs = ["kafka"]
[transforms.opt.datafile]
path = "{datafile}"

[sinks.api]
type = "optimizely_events"
inputs = ["opt"]
endpoint = "{endpoint}"
batch.max_events = 50
batch.timeout_secs = 0.05

[sinks.dead_letters]
type = "file"
inputs = ["opt.dropped", "api.dropped"]
path = "{dead_letters}"
"#,
                bootstrap = self.broker.address(),
                datafile = support::crate_root().join("config-examples/quickstart-datafile.json").display(),
                endpoint = self.api.url("/v1/events"),
                dead_letters = self.directory.path().join(format!("{name}.dead-letters.ndjson")).display(),
            ),
        )
    }

    fn relay(&self, config: &Path, name: &str) -> Relay {
        Relay::start(config, self.directory.path().join(format!("{name}.log")))
    }
}

/// Returns `received=N` of a summary line.
fn received(summary: &str) -> usize {
    let field = summary.split_whitespace().find_map(|field| field.strip_prefix("received=")).unwrap();
    field.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_share_partitions() {
    let setup = Setup::start("shared", 4).await;
    let config = setup.config("relay.toml", "shared", "relays", "", "");
    let first = setup.relay(&config, "first");
    let second = setup.relay(&config, "second");

    // Both members hold partitions once the group has settled after the second one joined.
    wait_until("both relays hold partitions", || {
        let first = first.held_partitions();
        let second = second.held_partitions();
        !first.is_empty() && !second.is_empty() && first.len() + second.len() == 4
    })
    .await;
    let producer = TestProducer::new(&setup.broker);
    producer.send("shared", &tracks(0..400, 4));

    let expected = expected_uuids(0..400);
    wait_until("every event reached the Event API", || missing(&uuid_counts(&setup.api), &expected).is_empty()).await;

    let counts = uuid_counts(&setup.api);
    assert_eq!(counts.len(), 400, "only the produced uuids arrive: {:?}", counts.keys().take(5).collect::<Vec<_>>());
    assert!(first.log().contains("reading partition"), "the first relay read nothing:\n{}", first.log());
    assert!(second.log().contains("reading partition"), "the second relay read nothing:\n{}", second.log());
    let first_summary = first.terminate().await;
    let second_summary = second.terminate().await;
    let duplicates: usize = counts.values().map(|count| count - 1).sum();
    assert_eq!(
        received(&first_summary) + received(&second_summary),
        400 + duplicates,
        "{first_summary} / {second_summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_relay_loses_no_event() {
    let setup = Setup::start("failover", 4).await;
    let config = setup.config("relay.toml", "failover", "relays", "commit_interval_secs = 0.2\n", "");
    let mut victim = setup.relay(&config, "victim");
    let survivor = setup.relay(&config, "survivor");
    wait_until("both relays hold partitions", || {
        let victim = victim.held_partitions();
        let survivor = survivor.held_partitions();
        !victim.is_empty() && !survivor.is_empty() && victim.len() + survivor.len() == 4
    })
    .await;

    let producer = TestProducer::new(&setup.broker);
    producer.send("failover", &tracks(0..200, 4));
    // The victim commits part of its partitions' events before it is killed.
    wait_until("the victim committed offsets", || victim.log().contains("committed offsets")).await;
    let revocations = survivor.log().matches("partitions revoked").count();
    victim.sigkill();
    victim.child.wait().await.unwrap();
    producer.send("failover", &tracks(200..400, 4));

    // The group removes the killed member once its session times out, and rebalances.
    wait_until("the survivor went through a rebalance", || {
        survivor.log().matches("partitions revoked").count() > revocations
    })
    .await;
    // NOTE: tansu 0.6.0 then gives the remaining members their previous partitions again: it keeps
    // the group's generation when no remaining member's subscription changed, and returns the stored
    // assignment. Kafka brokers start a new generation, and the survivor would take every partition.
    // A replacement relay joining makes tansu start one, so the killed relay's partitions are read
    // again from their committed offsets.
    let replacement = setup.relay(&config, "replacement");

    let expected = expected_uuids(0..400);
    wait_until("every event reached the Event API", || missing(&uuid_counts(&setup.api), &expected).is_empty()).await;
    let counts = uuid_counts(&setup.api);
    assert_eq!(counts.len(), 400, "only the produced uuids arrive");
    wait_until("the survivor and the replacement share every partition", || {
        let survivor = survivor.held_partitions();
        let replacement = replacement.held_partitions();
        survivor.is_disjoint(&replacement) && survivor.len() + replacement.len() == 4
    })
    .await;
    survivor.terminate().await;
    replacement.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_after_graceful_stop() {
    let setup = Setup::start("graceful", 3).await;
    // No periodic commit happens within the test, so only the commit at shutdown can move offsets.
    let config = setup.config("relay.toml", "graceful", "relays", "commit_interval_secs = 3600\n", "");
    let producer = TestProducer::new(&setup.broker);
    producer.send("graceful", &tracks(0..60, 3));

    let relay = setup.relay(&config, "first-run");
    let first_batch = expected_uuids(0..60);
    wait_until("the first events were delivered", || missing(&uuid_counts(&setup.api), &first_batch).is_empty()).await;
    let summary = relay.terminate().await;
    assert_eq!(summary, "summary: received=60 sent=60 dead_lettered=0 skipped=0 undelivered=0");

    producer.send("graceful", &tracks(60..90, 3));
    let relay = setup.relay(&config, "second-run");
    let all = expected_uuids(0..90);
    wait_until("the later events were delivered", || missing(&uuid_counts(&setup.api), &all).is_empty()).await;
    let log = relay.log();
    let summary = relay.terminate().await;

    assert_eq!(summary, "summary: received=30 sent=30 dead_lettered=0 skipped=0 undelivered=0", "{log}");
    let counts = uuid_counts(&setup.api);
    let repeated: Vec<&String> = counts.iter().filter(|(_, count)| **count > 1).map(|(uuid, _)| uuid).collect();
    assert!(repeated.is_empty(), "events final before the stop were sent again: {repeated:?}");
    for partition in 0..3 {
        assert!(
            log.contains(&format!("partition=graceful/{partition} offset=20")),
            "partition {partition} resumed after its 20 committed messages:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_kill_resumes_from_committed_offsets() {
    let setup = Setup::start("crash", 2).await;
    let config = setup.config("relay.toml", "crash", "relays", "commit_interval_secs = 0.2\n", "");
    let producer = TestProducer::new(&setup.broker);
    producer.send("crash", &tracks(0..40, 2));

    let mut relay = setup.relay(&config, "killed");
    let first_batch = expected_uuids(0..40);
    wait_until("the first events were delivered", || missing(&uuid_counts(&setup.api), &first_batch).is_empty()).await;
    // Several commit intervals pass, so the periodic commit covers every delivered event.
    wait_until("the delivered offsets were committed", || {
        let log = relay.log();
        let commits: Vec<&str> = log.lines().filter(|line| line.contains("committed offsets")).collect();
        ["crash/0@20", "crash/1@20"].iter().all(|offset| commits.iter().any(|line| line.contains(offset)))
    })
    .await;
    relay.sigkill();
    relay.child.wait().await.unwrap();

    producer.send("crash", &tracks(40..50, 2));
    let relay = setup.relay(&config, "restarted");
    let all = expected_uuids(0..50);
    wait_until("the later events were delivered", || missing(&uuid_counts(&setup.api), &all).is_empty()).await;
    let summary = relay.terminate().await;

    assert_eq!(summary, "summary: received=10 sent=10 dead_lettered=0 skipped=0 undelivered=0");
    let counts = uuid_counts(&setup.api);
    let repeated: Vec<&String> = counts.iter().filter(|(_, count)| **count > 1).map(|(uuid, _)| uuid).collect();
    assert!(repeated.is_empty(), "events committed before the kill were sent again: {repeated:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_message_dead_lettered_with_origin() {
    let setup = Setup::start("mixed", 2).await;
    let config = setup.config("relay.toml", "mixed", "relays", "", "");
    let producer = TestProducer::new(&setup.broker);
    producer.send(
        "mixed",
        &[
            (1, "k-0".to_owned(), track(0)),
            (1, "bad-key".to_owned(), "{\"type\":\"track\", not json".to_owned()),
            (1, "k-1".to_owned(), track(1)),
        ],
    );
    let (partition, offset) = producer.position("bad-key");

    let relay = setup.relay(&config, "relay");
    let dead_letters = setup.directory.path().join("relay.toml.dead-letters.ndjson");
    wait_until("the malformed message was dead-lettered", || !support::read_json_lines(&dead_letters).is_empty()).await;
    let expected = expected_uuids(0..2);
    wait_until("the valid events were delivered", || missing(&uuid_counts(&setup.api), &expected).is_empty()).await;
    let summary = relay.terminate().await;

    assert_eq!(summary, "summary: received=3 sent=2 dead_lettered=1 skipped=0 undelivered=0");
    let records = support::read_json_lines(&dead_letters);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["reason"], "invalid_json");
    assert_eq!(records[0]["event"], "{\"type\":\"track\", not json");
    assert_eq!(
        records[0]["origin"],
        serde_json::json!({"topic": "mixed", "partition": partition, "offset": offset, "key": "bad-key"})
    );
    assert_eq!(partition, 1);
}
