//! The `delete-user` command: one deletion request per user, sent with the settings of a configured
//! `optimizely_user_deletion` sink.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use futures::StreamExt;
use optimizely_relay::config::Config;
use optimizely_relay::sinks::optimizely_user_deletion::{
    DeletionClient, DeletionOutcome, OptimizelyUserDeletionConfig,
};
use optimizely_relay::sinks::SinkConfig;

use crate::{load, EXIT_CONFIG, EXIT_STARTUP};

/// Exit status when at least one deletion failed.
const EXIT_FAILED: u8 = 1;

/// Arguments of `delete-user`.
#[derive(Debug, clap::Args)]
pub struct DeleteUserArgs {
    /// The TOML configuration file with at least one `optimizely_user_deletion` sink.
    #[arg(long, short)]
    config: PathBuf,

    /// A user id to delete; repeat the option for several users.
    #[arg(long = "user-id", value_name = "ID")]
    user_ids: Vec<String>,

    /// A file with one user id per line (blank lines are ignored), or `-` for standard input.
    #[arg(long, value_name = "FILE")]
    from: Option<PathBuf>,

    /// The id of the `optimizely_user_deletion` sink whose settings to use; required when the
    /// configuration has several.
    #[arg(long, value_name = "ID")]
    sink: Option<String>,
}

/// Sends one deletion request per distinct user and prints one line per user with the outcome.
///
/// Returns 0 when every deletion was accepted, 1 when any failed, 2 for an invalid configuration or
/// invalid arguments, and 3 when the HTTP client cannot be built.
pub async fn run(args: DeleteUserArgs) -> ExitCode {
    let config = match load(&args.config) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let (sink_id, settings) = match select_sink(&config, args.sink.as_deref()) {
        Ok(selected) => selected,
        Err(message) => return config_error(&message),
    };
    let user_ids = match collect_user_ids(args.user_ids, args.from.as_deref()) {
        Ok(user_ids) => user_ids,
        Err(message) => return config_error(&message),
    };
    let client = match DeletionClient::new(sink_id.to_owned(), settings) {
        Ok(client) => client,
        Err(error) => {
            eprintln!("error: sinks.{sink_id}: {error}");
            return ExitCode::from(EXIT_STARTUP);
        }
    };

    let failed = send_all(&client, user_ids).await;
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

fn config_error(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_CONFIG)
}

/// Sends the requests, `request.concurrency` at a time, and prints each outcome in the order of
/// `user_ids`. Returns the number of failed deletions.
async fn send_all(client: &DeletionClient, user_ids: Vec<String>) -> usize {
    let total = user_ids.len();
    let mut outcomes = futures::stream::iter(user_ids)
        .map(|user_id| async move {
            let outcome = client.delete(&user_id).await;
            (user_id, outcome)
        })
        .buffered(client.concurrency());

    let mut failed = 0;
    while let Some((user_id, outcome)) = outcomes.next().await {
        match outcome {
            DeletionOutcome::Deleted { status, .. } => println!("deleted {user_id} ({status})"),
            DeletionOutcome::Failed(failure) => {
                failed += 1;
                println!("failed {user_id}: {}", failure.message);
            }
        }
    }
    eprintln!("summary: deleted={} failed={failed}", total - failed);
    failed
}

/// Returns the sink named `requested`, or the only `optimizely_user_deletion` sink when none is named.
fn select_sink<'a>(
    config: &'a Config,
    requested: Option<&'a str>,
) -> Result<(&'a str, &'a OptimizelyUserDeletionConfig), String> {
    let deletion_sinks: Vec<(&str, &OptimizelyUserDeletionConfig)> = config
        .sinks
        .iter()
        .filter_map(|(id, sink)| match &sink.config {
            SinkConfig::OptimizelyUserDeletion(settings) => Some((id.as_str(), settings)),
            _ => None,
        })
        .collect();
    let ids: Vec<&str> = deletion_sinks.iter().map(|(id, _)| *id).collect();

    match requested {
        Some(requested) => match deletion_sinks.iter().find(|(id, _)| *id == requested) {
            Some(selected) => Ok(*selected),
            None if config.sinks.contains_key(requested) => Err(format!(
                "sink `{requested}` is not of type `optimizely_user_deletion`; choose one of: {}",
                list_or_none(&ids)
            )),
            None => Err(format!("sink `{requested}` not found; choose one of: {}", list_or_none(&ids))),
        },
        None => match deletion_sinks.as_slice() {
            [only] => Ok(*only),
            [] => Err("the configuration has no sink of type `optimizely_user_deletion`; add a `[sinks.ID]` \
                 table with `type = \"optimizely_user_deletion\"` and `personal_access_token`"
                .to_owned()),
            _ => Err(format!(
                "the configuration has several `optimizely_user_deletion` sinks ({}); choose one with --sink",
                ids.join(", ")
            )),
        },
    }
}

fn list_or_none(ids: &[&str]) -> String {
    if ids.is_empty() {
        "none is configured".to_owned()
    } else {
        ids.join(", ")
    }
}

/// Collects the user ids of `--user-id` and of `--from`, trimmed, without blank lines and without
/// repeats, in their first order.
fn collect_user_ids(mut user_ids: Vec<String>, from: Option<&Path>) -> Result<Vec<String>, String> {
    if let Some(path) = from {
        let text = read_id_file(path)?;
        user_ids.extend(text.lines().map(str::trim).filter(|line| !line.is_empty()).map(str::to_owned));
    }
    for user_id in &mut user_ids {
        *user_id = user_id.trim().to_owned();
    }
    if user_ids.iter().any(String::is_empty) {
        return Err("a --user-id value is blank; give the id of the user to delete".to_owned());
    }

    let mut seen = std::collections::HashSet::new();
    user_ids.retain(|user_id| seen.insert(user_id.clone()));
    if user_ids.is_empty() {
        return Err("no user ids given; pass --user-id ID or --from FILE".to_owned());
    }
    Ok(user_ids)
}

fn read_id_file(path: &Path) -> Result<String, String> {
    if path == Path::new("-") {
        let mut text = String::new();
        return match std::io::stdin().read_to_string(&mut text) {
            Ok(_) => Ok(text),
            Err(error) => Err(format!("cannot read user ids from standard input: {error}")),
        };
    }
    std::fs::read_to_string(path).map_err(|error| format!("cannot read user ids from `{}`: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_trimmed_and_deduplicated() {
        let directory = std::env::temp_dir().join(format!("delete-user-ids-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("ids.txt");
        std::fs::write(&path, "user-2\n\n  user-3  \r\nuser-1\n\n").unwrap();

        let user_ids = collect_user_ids(vec!["user-1".to_owned(), " user-2".to_owned()], Some(&path)).unwrap();

        assert_eq!(user_ids, vec!["user-1", "user-2", "user-3"]);
        std::fs::remove_dir_all(&directory).unwrap();
    }

    #[test]
    fn no_ids_rejected() {
        assert_eq!(
            collect_user_ids(Vec::new(), None),
            Err("no user ids given; pass --user-id ID or --from FILE".to_owned())
        );
    }

    #[test]
    fn blank_id_rejected() {
        let error = collect_user_ids(vec!["  ".to_owned()], None).unwrap_err();
        assert!(error.starts_with("a --user-id value is blank"), "{error}");
    }
}
