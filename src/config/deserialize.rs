//! Typed deserialization of one component's table that reports every unknown key and invalid value.
//!
//! serde stops at the first error. To report all of them, each failing key is recorded, removed from a
//! copy of the table, and deserialization is retried. "missing field" errors caused by a removed key are
//! not reported twice.

use serde::de::DeserializeOwned;

use super::error::did_you_mean;

/// Option names whose values are secrets: errors about them never repeat the value.
const SECRET_KEYS: &[&str] =
    &["access_token", "personal_access_token", "write_keys", "token", "bearer_token", "password"];

/// The maximum number of errors reported for one component.
const MAX_ERRORS_PER_COMPONENT: usize = 32;

/// Deserializes `table` into `T`, returning one message per unknown key or invalid value.
pub fn deserialize_table<T: DeserializeOwned>(table: toml::Table) -> Result<T, Vec<String>> {
    let mut current = table;
    let mut errors: Vec<String> = Vec::new();
    let mut removed: Vec<String> = Vec::new();

    loop {
        let attempt: Result<T, _> = serde_path_to_error::deserialize(toml::Value::Table(current.clone()));
        let error = match attempt {
            Ok(value) if errors.is_empty() => return Ok(value),
            Ok(_) => return Err(errors),
            Err(error) => error,
        };

        let path = error.path().to_string();
        let message = first_line(&error.inner().to_string());

        if let Some(field) = missing_field(&message) {
            let missing_path = join(&path, field);
            if !removed.contains(&missing_path) {
                errors.push(format!("missing required option `{missing_path}`"));
            }
            return Err(errors);
        }

        errors.push(describe(&path, &message));
        if errors.len() >= MAX_ERRORS_PER_COMPONENT || !remove_path(&mut current, &path) {
            return Err(errors);
        }
        // An array element's error removes the whole array, so the array is what went missing.
        removed.push(path.split('[').next().unwrap_or(&path).to_owned());
    }
}

fn describe(path: &str, message: &str) -> String {
    if let Some((unknown, expected)) = unknown_field(message) {
        let parent = path.rsplit_once('.').map(|(parent, _)| parent);
        let hint = did_you_mean(unknown, expected.iter().map(String::as_str));
        let hint = match (parent, hint.is_empty()) {
            (Some(parent), false) => hint.replacen('`', &format!("`{parent}."), 1),
            _ => hint,
        };
        return format!("unknown option `{path}`{hint}");
    }

    if let Some((unknown, expected)) = unknown_variant(message) {
        let known: Vec<String> = expected.iter().map(|value| format!("`{value}`")).collect();
        let hint = did_you_mean(unknown, expected.iter().map(String::as_str));
        return format!("invalid value for `{path}`: `{unknown}` is not one of {}{hint}", known.join(", "));
    }

    let leaf = path.rsplit('.').next().unwrap_or(path);
    let leaf = leaf.split('[').next().unwrap_or(leaf);
    if SECRET_KEYS.contains(&leaf) {
        return format!("invalid value for `{path}` (not shown because it is a secret); expected a string");
    }
    format!("invalid value for `{path}`: {message}")
}

/// Parses serde's "unknown field `x`, expected `a` or `b`" message into the key and the known keys.
fn unknown_field(message: &str) -> Option<(&str, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, expected) = rest.split_once('`')?;
    let known = expected.split('`').skip(1).step_by(2).map(str::to_owned).collect();
    Some((unknown, known))
}

/// Parses serde's "unknown variant `x`, expected `a` or `b`" message into the value and the known
/// values.
fn unknown_variant(message: &str) -> Option<(&str, Vec<String>)> {
    let rest = message.strip_prefix("unknown variant `")?;
    let (unknown, expected) = rest.split_once('`')?;
    let known: Vec<String> = expected.split('`').skip(1).step_by(2).map(str::to_owned).collect();
    if known.is_empty() {
        return None;
    }
    Some((unknown, known))
}

fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or_default().to_owned()
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() || path == "." {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

/// Removes the value at a dotted path such as `batch.max_events` or `inputs[1]`.
fn remove_path(table: &mut toml::Table, path: &str) -> bool {
    let segments: Vec<&str> = path.split('.').collect();
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };

    let mut current = table;
    for segment in parents {
        match current.get_mut(*segment) {
            Some(toml::Value::Table(child)) => current = child,
            _ => return false,
        }
    }

    // An invalid array element (`tags[2]`) removes the whole array: it cannot be fixed element-wise.
    let key = last.split('[').next().unwrap_or(last);
    current.remove(key).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Batch {
        #[serde(default)]
        max_events: u64,
        #[serde(default)]
        timeout_secs: f64,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Settings {
        endpoint: String,
        #[serde(default)]
        access_token: Option<String>,
        #[serde(default)]
        batch: Option<Batch>,
    }

    fn errors_of(text: &str) -> Vec<String> {
        let table: toml::Table = toml::from_str(text).unwrap();
        deserialize_table::<Settings>(table).unwrap_err()
    }

    #[test]
    fn valid_table_deserializes() {
        let table: toml::Table = toml::from_str("endpoint = 'x'\n[batch]\nmax_events = 3").unwrap();
        let settings: Settings = deserialize_table(table).unwrap();
        assert_eq!(settings.batch.unwrap().max_events, 3);
    }

    #[test]
    fn nested_typo_gets_full_path_hint() {
        let errors = errors_of("endpoint = 'x'\n[batch]\nmax_evnts = 3");
        assert_eq!(errors, vec!["unknown option `batch.max_evnts`; did you mean `batch.max_events`?"]);
    }

    #[test]
    fn all_problems_reported_together() {
        let errors = errors_of("endpont = 'x'\nendpoint = 5\n[batch]\ntimeout_secs = 'slow'");
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors.iter().any(|error| error.contains("`batch.timeout_secs`")), "{errors:?}");
        assert!(errors.iter().any(|error| error.contains("unknown option `endpont`; did you mean `endpoint`?")));
        assert!(errors.iter().any(|error| error.starts_with("invalid value for `endpoint`")), "{errors:?}");
    }

    #[test]
    fn missing_required_option_named() {
        assert_eq!(errors_of("[batch]\nmax_events = 1"), vec!["missing required option `endpoint`"]);
    }

    #[test]
    fn secret_list_element_not_repeated() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Keys {
            write_keys: Vec<String>,
        }
        let table: toml::Table = toml::from_str("write_keys = ['wk-secret-1', 5]").unwrap();
        let errors = deserialize_table::<Keys>(table).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(!errors[0].contains("wk-secret-1"), "{}", errors[0]);
        assert!(errors[0].contains("not shown because it is a secret"), "{}", errors[0]);
    }

    #[test]
    fn secret_value_not_repeated() {
        let errors = errors_of("endpoint = 'x'\naccess_token = ['hunter2-secret']");
        assert_eq!(errors.len(), 1);
        assert!(!errors[0].contains("hunter2-secret"), "{}", errors[0]);
        assert!(errors[0].contains("`access_token`"), "{}", errors[0]);
    }
}
