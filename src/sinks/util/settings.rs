//! Parsing of settings that several sinks share: durations in seconds and endpoint URLs.

use std::time::Duration;

use reqwest::Url;

/// The longest duration any `_secs` setting accepts: one day. Larger values are configuration mistakes,
/// and keeping them bounded keeps deadline arithmetic from overflowing.
const MAX_SETTING_SECS: f64 = 86_400.0;

/// Converts a `_secs` setting, recording a problem unless it is above 0 and at most one day.
pub(crate) fn positive_secs(name: &str, secs: f64, problems: &mut Vec<String>) -> Duration {
    if secs.is_finite() && secs > 0.0 && secs <= MAX_SETTING_SECS {
        return Duration::from_secs_f64(secs);
    }
    problems
        .push(format!("`{name}` is {secs}, but it must be a number of seconds above 0 and at most {MAX_SETTING_SECS}"));
    Duration::ZERO
}

/// Parses an endpoint URL setting, accepting only absolute `http` and `https` URLs with a host.
///
/// The error describes what is wrong with the URL, such as "the scheme is `ftp`".
pub(crate) fn parse_endpoint(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|error| error.to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("the scheme is `{}`", url.scheme()));
    }
    if url.host_str().is_none() {
        return Err("the URL has no host".to_owned());
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_requires_http_url() {
        assert!(parse_endpoint("https://logx.optimizely.com/v1/events").is_ok());
        assert!(parse_endpoint("http://127.0.0.1:1234/x").is_ok());
        assert_eq!(parse_endpoint("logx.optimizely.com/v1/events"), Err("relative URL without a base".to_owned()));
        assert_eq!(parse_endpoint("file:///tmp/events"), Err("the scheme is `file`".to_owned()));
        assert!(parse_endpoint("").is_err());
    }
}
