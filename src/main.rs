//! The `optimizely-relay` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use optimizely_relay::config::Config;
use optimizely_relay::observability::progress::format_progress;
use optimizely_relay::sources::file::FileMode;
use optimizely_relay::sources::SourceConfig;
use optimizely_relay::topology::{self, RunStats, Summary};
use optimizely_relay::unit_test;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

mod delete_user;

/// The allocator. Mapping a message allocates many small strings and maps, and mimalloc serves them
/// faster than the system allocator: `malloc` and `free` took about 40% of the CPU time of the
/// end-to-end benchmark before (perf, 2-core machine; see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status for an invalid configuration.
const EXIT_CONFIG: u8 = 2;
/// Exit status for a component that failed to start, such as a datafile that could not be loaded.
const EXIT_STARTUP: u8 = 3;
/// Exit status for a run that left events undelivered or a source that failed.
const EXIT_UNDELIVERED: u8 = 1;
/// Exit status of `test` when a test failed.
const EXIT_TEST_FAILED: u8 = 1;

/// Delivers Segment track events to the Optimizely Event API as conversions.
#[derive(Debug, Parser)]
#[command(name = "optimizely-relay", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Log level or filter directives, such as `debug` or `optimizely_relay=debug`. Overrides RUST_LOG.
    #[arg(long, global = true)]
    log_level: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the pipeline until its sources end (or SIGINT/SIGTERM), then drains and prints a summary.
    Run {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,

        /// Read the files of `file` sources to their end once and stop, instead of following them.
        #[arg(long)]
        once: bool,
    },
    /// Checks a configuration and its tests without sending anything, and reports every problem found.
    Validate {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Glob pattern of TOML files with more `[[tests]]` tables to check.
        #[arg(long, value_name = "GLOB")]
        tests: Option<String>,
    },
    /// Runs the `[[tests]]` of a configuration through the transform, offline, and compares the outputs.
    Test {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Glob pattern of TOML files with more `[[tests]]` tables, such as `tests/*.toml`.
        #[arg(long, value_name = "GLOB")]
        tests: Option<String>,
        /// Writes the actual output into each snapshot file that is missing, unusable or different.
        #[arg(long)]
        update: bool,
    },
    /// Requests the deletion of users' visitor data from Optimizely, one request per user, with the
    /// settings of an `optimizely_user_deletion` sink, and prints the outcome for each user.
    DeleteUser(delete_user::DeleteUserArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `test` reports dead-lettered messages in its results, so the transform's warnings about them
    // would only repeat those results between the lines.
    let default_level = if matches!(cli.command, Command::Test { .. }) { "error" } else { "info" };
    init_logging(cli.log_format, cli.log_level.as_deref(), default_level);

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_STARTUP);
        }
    };
    let code = match cli.command {
        Command::Run { config, once } => runtime.block_on(run(config, once, cli.log_format)),
        Command::Validate { config, tests } => validate(config, tests.as_deref()),
        Command::Test { config, tests, update } => runtime.block_on(test(config, tests.as_deref(), update)),
        Command::DeleteUser(args) => runtime.block_on(delete_user::run(args)),
    };
    // A read of standard input blocks a runtime thread until a line arrives, and a normal runtime
    // shutdown would wait for it. Everything that matters has finished here, so do not wait.
    runtime.shutdown_background();
    code
}

fn init_logging(format: LogFormat, level: Option<&str>, default_level: &str) {
    let filter = match level {
        Some(level) => tracing_subscriber::EnvFilter::new(level),
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::from_file(path).map_err(|errors| {
        eprint!("error: {errors}");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn validate(path: PathBuf, tests_pattern: Option<&str>) -> ExitCode {
    let config = match load(&path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let mut problems = config.check_local_files();
    let mut warnings = optimizely_relay::config::unconsumed_output_warnings(&config);
    match unit_test::load_tests(&path, &config, tests_pattern) {
        Ok(tests) => {
            let check = unit_test::check_tests(&config, &tests);
            problems.extend(check.errors);
            warnings.extend(check.warnings);
        }
        Err(errors) => problems.extend(errors),
    }
    if !problems.is_empty() {
        eprint!("error: {}", optimizely_relay::config::ConfigErrors(problems));
        return ExitCode::from(EXIT_CONFIG);
    }
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    println!("configuration `{}` is valid", path.display());
    ExitCode::SUCCESS
}

/// Runs the tests and prints their results on standard output. Returns exit status 1 when a test
/// fails, and 2 when the configuration or a test definition is invalid or there is no test.
async fn test(path: PathBuf, tests_pattern: Option<&str>, update: bool) -> ExitCode {
    let config = match load(&path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let tests = match unit_test::load_tests(&path, &config, tests_pattern) {
        Ok(tests) => tests,
        Err(errors) => {
            eprint!("error: {}", optimizely_relay::config::ConfigErrors(errors));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if tests.is_empty() {
        eprintln!("error: no tests found in `{}`; add `[[tests]]` tables or give --tests", path.display());
        return ExitCode::from(EXIT_CONFIG);
    }

    match unit_test::run_tests(&config, &tests, update, &mut std::io::stdout().lock()).await {
        Ok(summary) if summary.failed == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(EXIT_TEST_FAILED),
        Err(error) => {
            eprintln!("error: cannot write the test results to standard output: {error}");
            ExitCode::from(EXIT_TEST_FAILED)
        }
    }
}

async fn run(path: PathBuf, once: bool, log_format: LogFormat) -> ExitCode {
    let config = match load(&path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let topology = match topology::build(&config).await {
        Ok(topology) => topology,
        Err(errors) => {
            for error in errors {
                eprintln!("error: {error}");
            }
            return ExitCode::from(EXIT_STARTUP);
        }
    };

    let topology = if once { topology.read_once() } else { topology };
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    let stats = Arc::new(RunStats::default());
    let started = Instant::now();
    let progress = (std::io::stderr().is_terminal() && is_finite(&config, once))
        .then(|| tokio::spawn(show_progress(stats.clone())));
    let report = topology.run_with_stats(shutdown, stats.clone()).await;
    if let Some(progress) = progress {
        progress.abort();
        // The last line shows the final totals and the average rate over the whole run; the newline
        // keeps the summary on a line of its own.
        eprintln!("\r\x1b[2K{}", progress_line(&stats, &mut (Summary::default(), started)));
    }

    match log_format {
        LogFormat::Text => eprintln!("summary: {}", report.summary),
        LogFormat::Json => {
            let line = serde_json::json!({ "summary": report.summary });
            eprintln!("{line}");
        }
    }
    for error in &report.source_errors {
        eprintln!("error: {error}");
    }
    if report.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_UNDELIVERED)
    }
}

/// Returns whether every source of `config` ends by itself: standard input, or files read once.
fn is_finite(config: &Config, once: bool) -> bool {
    config.sources.values().all(|source| match source {
        SourceConfig::Stdin(_) => true,
        SourceConfig::File(file) => once || file.mode == FileMode::Once,
        _ => false,
    })
}

/// Rewrites a progress line on standard error every second until aborted.
async fn show_progress(stats: Arc<RunStats>) {
    let mut previous = (stats.summary(), Instant::now());
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        eprint!("\r\x1b[2K{}", progress_line(&stats, &mut previous));
    }
}

/// Formats the progress line and remembers the counts for the next rate.
fn progress_line(stats: &RunStats, previous: &mut (Summary, Instant)) -> String {
    let current = stats.summary();
    let line = format_progress(&current, &previous.0, previous.1.elapsed(), stats.bytes());
    *previous = (current, Instant::now());
    line
}

/// Cancels `shutdown` on the first SIGINT or SIGTERM, and exits at once on the second.
async fn watch_signals(shutdown: CancellationToken) {
    for count in 1.. {
        if wait_for_signal().await.is_err() {
            tracing::error!("cannot listen for signals; stop the process with SIGKILL");
            return;
        }
        if count == 1 {
            tracing::info!("shutdown requested; stopping sources and draining (send the signal again to exit at once)");
            shutdown.cancel();
        } else {
            tracing::warn!("second shutdown signal; exiting without draining");
            std::process::exit(130);
        }
    }
}

async fn wait_for_signal() -> std::io::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result,
        _ = terminate.recv() => Ok(()),
    }
}
