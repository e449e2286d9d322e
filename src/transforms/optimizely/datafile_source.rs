//! Datafile sources: a local file, a URL, or an SDK key on Optimizely's CDN.
//!
//! The datafile is loaded before the first event, so every problem is reported at startup with the
//! path or URL, the status or cause, and the likely fix. The datafile access token is sent only in
//! the `Authorization` header, and no error, log line or `Debug` output contains it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, IF_MODIFIED_SINCE, LAST_MODIFIED};
use reqwest::{StatusCode, Url};

use super::datafile::{Datafile, DatafileError};

/// The CDN that serves the datafiles of SDK keys.
pub const DEFAULT_CDN_URL: &str = "https://cdn.optimizely.com";

/// The host that serves the datafiles of SDK keys of secure environments, which need an access token.
pub const DEFAULT_AUTHENTICATED_CDN_URL: &str = "https://config.optimizely.com";

fn default_refresh_interval_secs() -> f64 {
    300.0
}

/// Refresh intervals below this many seconds are accepted with a warning: they multiply the requests
/// to the CDN without making experiments noticeably fresher.
pub const MIN_RECOMMENDED_REFRESH_INTERVAL_SECS: f64 = 30.0;

fn default_timeout_secs() -> f64 {
    10.0
}

/// The `datafile` settings of the `optimizely` transform. Exactly one of `path`, `url` and `sdk_key`
/// must be set.
#[derive(Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatafileConfig {
    /// Path of a local datafile.
    pub path: Option<PathBuf>,

    /// URL of the datafile, fetched with a GET request.
    pub url: Option<String>,

    /// SDK key of the Optimizely environment. The datafile is fetched from
    /// `<cdn_url>/datafiles/<sdk_key>.json`, or with `access_token` from
    /// `<authenticated_cdn_url>/datafiles/auth/<sdk_key>.json`.
    pub sdk_key: Option<String>,

    /// Datafile access token of a secure environment, sent as `Authorization: Bearer <token>`. Only
    /// valid with `sdk_key`.
    pub access_token: Option<String>,

    /// Seconds between refreshes of a datafile loaded from a URL or SDK key (default 300). Values
    /// below 30 are accepted with a warning. A datafile read from `path` is not refreshed.
    #[serde(default = "default_refresh_interval_secs")]
    pub refresh_interval_secs: f64,

    /// Time limit in seconds for one datafile request, from connecting to the end of the body
    /// (default 10).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: f64,

    /// Base URL for SDK key datafiles without an access token (default `https://cdn.optimizely.com`),
    /// such as a caching proxy.
    pub cdn_url: Option<String>,

    /// Base URL for SDK key datafiles with an access token (default `https://config.optimizely.com`).
    pub authenticated_cdn_url: Option<String>,
}

impl fmt::Debug for DatafileConfig {
    /// Formats the settings with the access token replaced, so the token cannot reach a log.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("DatafileConfig")
            .field("path", &self.path)
            .field("url", &self.url.as_deref().map(redact_url_text))
            .field("sdk_key", &self.sdk_key)
            .field("access_token", &self.access_token.as_ref().map(|_| "<redacted>"))
            .field("refresh_interval_secs", &self.refresh_interval_secs)
            .field("timeout_secs", &self.timeout_secs)
            .field("cdn_url", &self.cdn_url.as_deref().map(redact_url_text))
            .field("authenticated_cdn_url", &self.authenticated_cdn_url.as_deref().map(redact_url_text))
            .finish()
    }
}

/// A datafile loaded from its source.
#[derive(Debug, Clone)]
pub struct LoadedDatafile {
    /// The parsed datafile, shared with every task that maps events.
    pub datafile: Arc<Datafile>,
    /// The `Last-Modified` header of the response, to send as `If-Modified-Since` on refresh.
    /// Always `None` for a local file.
    pub last_modified: Option<String>,
    /// The path or URL it was loaded from, with any URL password replaced. The access token is never
    /// part of it, because the token travels in a header.
    pub source: String,
    /// The datafile as received, kept so that the last good datafile can be saved to disk.
    pub body: bytes::Bytes,
}

/// The result of a conditional datafile request.
#[derive(Debug, Clone)]
pub enum FetchResult {
    /// The server sent a datafile.
    Loaded(LoadedDatafile),
    /// The server answered 304 Not Modified to `If-Modified-Since`: the current datafile is still valid.
    NotModified,
}

/// The setting a remote datafile's URL came from, which decides the hints in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RemoteKind {
    Url,
    SdkKey,
}

/// A resolved datafile source.
enum Location<'a> {
    File(&'a Path),
    Remote { url: Url, kind: RemoteKind, token: Option<&'a str> },
}

impl DatafileConfig {
    /// Checks the settings and returns every problem found, each naming the options involved.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        self.check_source_choice(&mut problems);
        self.check_values(&mut problems);
        self.check_limits(&mut problems);
        problems
    }

    fn check_source_choice(&self, problems: &mut Vec<String>) {
        let mut set = Vec::new();
        if self.path.is_some() {
            set.push("`path`");
        }
        if self.url.is_some() {
            set.push("`url`");
        }
        if self.sdk_key.is_some() {
            set.push("`sdk_key`");
        }

        match set.len() {
            0 => problems.push("datafile: set one of `path`, `url` or `sdk_key`".to_owned()),
            1 => {}
            _ => problems.push(format!(
                "datafile: set only one of `path`, `url` or `sdk_key`, but {} are set",
                set.join(" and ")
            )),
        }

        if self.access_token.is_some() && self.sdk_key.is_none() {
            problems.push(
                "datafile.access_token is set without datafile.sdk_key; the token authenticates the SDK key's \
                 datafile request, so set sdk_key or remove access_token"
                    .to_owned(),
            );
        }
    }

    fn check_values(&self, problems: &mut Vec<String>) {
        if self.path.as_ref().is_some_and(|path| path.as_os_str().is_empty()) {
            problems.push("datafile.path is empty; set the path of a datafile".to_owned());
        }
        if let Some(url) = &self.url {
            check_base_url("datafile.url", url, problems);
        }
        if let Some(sdk_key) = &self.sdk_key {
            check_sdk_key(sdk_key, problems);
        }
        if let Some(token) = &self.access_token {
            check_access_token(token, problems);
        }
        if let Some(url) = &self.cdn_url {
            check_base_url("datafile.cdn_url", url, problems);
        }
        if let Some(url) = &self.authenticated_cdn_url {
            check_base_url("datafile.authenticated_cdn_url", url, problems);
        }
    }

    fn check_limits(&self, problems: &mut Vec<String>) {
        let timeout_ok = self.timeout_secs > 0.0 && Duration::try_from_secs_f64(self.timeout_secs).is_ok();
        if !timeout_ok {
            problems.push(format!(
                "datafile.timeout_secs is {}; set a positive number of seconds, such as 10",
                self.timeout_secs
            ));
        }
        let interval_ok =
            self.refresh_interval_secs > 0.0 && Duration::try_from_secs_f64(self.refresh_interval_secs).is_ok();
        if !interval_ok {
            problems.push(format!(
                "datafile.refresh_interval_secs is {}; set a positive number of seconds, such as 300",
                self.refresh_interval_secs
            ));
        }
    }

    /// Returns whether the datafile comes from a URL or SDK key, and so is refreshed.
    pub fn is_remote(&self) -> bool {
        self.path.is_none()
    }

    /// Returns the path or URL the datafile is loaded from, with any URL password replaced and never
    /// the access token.
    pub fn source_description(&self) -> String {
        match self.location() {
            Ok(Location::File(path)) => path.display().to_string(),
            Ok(Location::Remote { url, .. }) => redact_url(&url),
            Err(_) => "an invalid datafile source".to_owned(),
        }
    }

    /// Returns the refresh interval.
    pub fn refresh_interval(&self) -> Duration {
        Duration::try_from_secs_f64(self.refresh_interval_secs).unwrap_or(Duration::from_secs(300))
    }

    /// Resolves the configured source. Call only after [`DatafileConfig::validate`] found no problem.
    fn location(&self) -> Result<Location<'_>, DatafileError> {
        if let Some(path) = &self.path {
            return Ok(Location::File(path));
        }
        if let Some(url) = &self.url {
            let url = parse_url("datafile.url", url).map_err(invalid_config)?;
            return Ok(Location::Remote { url, kind: RemoteKind::Url, token: None });
        }
        let Some(sdk_key) = &self.sdk_key else {
            return Err(invalid_config("datafile: set one of `path`, `url` or `sdk_key`".to_owned()));
        };

        let token = self.access_token.as_deref();
        let url = self.sdk_key_url(sdk_key, token.is_some())?;
        Ok(Location::Remote { url, kind: RemoteKind::SdkKey, token })
    }

    /// Builds `<base>/datafiles/<sdk_key>.json`, or `<base>/datafiles/auth/<sdk_key>.json` when
    /// `authenticated`.
    fn sdk_key_url(&self, sdk_key: &str, authenticated: bool) -> Result<Url, DatafileError> {
        let (option, base) = if authenticated {
            (
                "datafile.authenticated_cdn_url",
                self.authenticated_cdn_url.as_deref().unwrap_or(DEFAULT_AUTHENTICATED_CDN_URL),
            )
        } else {
            ("datafile.cdn_url", self.cdn_url.as_deref().unwrap_or(DEFAULT_CDN_URL))
        };
        let mut url = parse_url(option, base).map_err(invalid_config)?;

        let file_name = format!("{sdk_key}.json");
        let mut segments: Vec<&str> = vec!["datafiles"];
        if authenticated {
            segments.push("auth");
        }
        segments.push(&file_name);

        // An http(s) URL always has path segments, so the error branch is not taken in practice.
        {
            let mut path =
                url.path_segments_mut().map_err(|_| invalid_config(format!("{option} cannot be a base URL")))?;
            path.pop_if_empty().extend(segments);
        }
        Ok(url)
    }

    fn timeout(&self) -> Duration {
        Duration::try_from_secs_f64(self.timeout_secs).unwrap_or(Duration::from_secs(10))
    }
}

fn check_base_url(option: &str, text: &str, problems: &mut Vec<String>) {
    if let Err(problem) = parse_url(option, text) {
        problems.push(problem);
    }
}

fn check_sdk_key(sdk_key: &str, problems: &mut Vec<String>) {
    if sdk_key.is_empty() {
        problems.push("datafile.sdk_key is empty; set the SDK key of the Optimizely environment".to_owned());
        return;
    }

    // An unset variable is reported by the interpolation, which leaves its reference in the value.
    if sdk_key.contains("${") {
        return;
    }

    // The key becomes part of the URL path, and Optimizely SDK keys use only these characters.
    let valid = sdk_key.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
    if !valid {
        problems.push(format!(
            "datafile.sdk_key {sdk_key:?} contains characters other than letters, digits, '-' and '_'; copy the \
             SDK key from the environment's settings in Optimizely"
        ));
    }
}

/// Checks the token without ever quoting it.
fn check_access_token(token: &str, problems: &mut Vec<String>) {
    if token.is_empty() {
        problems.push("datafile.access_token is empty; set the token or remove the option".to_owned());
        return;
    }
    if !token.bytes().all(|byte| byte.is_ascii_graphic()) {
        problems.push(
            "datafile.access_token contains whitespace or characters outside visible ASCII, which an HTTP \
             header cannot carry; copy the token again without surrounding spaces"
                .to_owned(),
        );
    }
}

/// Parses an http(s) URL, or returns the problem naming `option`.
fn parse_url(option: &str, text: &str) -> Result<Url, String> {
    let display_text = redact_url_text(text);
    let url = Url::parse(text).map_err(|error| format!("{option} {display_text:?} is not a valid URL: {error}"))?;

    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{option} {display_text:?} must be an http:// or https:// URL"));
    }
    Ok(url)
}

fn invalid_config(problems: String) -> DatafileError {
    DatafileError::InvalidConfig { problems }
}

/// Returns the URL text with any password replaced by `REDACTED`, for messages.
fn redact_url_text(text: &str) -> String {
    match Url::parse(text) {
        Ok(url) => redact_url(&url),
        Err(_) => text.to_owned(),
    }
}

/// Returns the URL with any password replaced by `REDACTED`, for messages.
///
/// NOTE: Secrets in query parameters are not recognised and stay visible. An SDK key is not a secret,
/// because client-side SDKs publish it.
fn redact_url(url: &Url) -> String {
    let mut redacted_url = url.clone();
    if redacted_url.password().is_some() {
        let _ = redacted_url.set_password(Some("REDACTED"));
    }
    redacted_url.to_string()
}

/// Loads the configured datafile: reads the file, or fetches the URL with `client`.
///
/// Fails when the settings are invalid, the file cannot be read, the request fails or times out
/// (`timeout_secs`), the response is not 2xx, or the body is not a usable datafile. Every error names
/// the path or URL, and none contains the access token.
pub async fn load_datafile(config: &DatafileConfig, client: &reqwest::Client) -> Result<LoadedDatafile, DatafileError> {
    match fetch_datafile(config, client, None).await? {
        FetchResult::Loaded(loaded) => Ok(loaded),
        // Only a conditional request yields NotModified, and this one is unconditional.
        FetchResult::NotModified => Err(DatafileError::HttpStatus {
            url: config.source_description(),
            status: 304,
            hint: "the server answered Not Modified to an unconditional request; check the datafile URL",
        }),
    }
}

/// Loads the configured datafile like [`load_datafile`]; for a remote datafile, sends
/// `If-Modified-Since` when `if_modified_since` is given, and returns [`FetchResult::NotModified`] on 304.
pub async fn fetch_datafile(
    config: &DatafileConfig,
    client: &reqwest::Client,
    if_modified_since: Option<&str>,
) -> Result<FetchResult, DatafileError> {
    let problems = config.validate();
    if !problems.is_empty() {
        return Err(invalid_config(problems.join("; ")));
    }

    match config.location()? {
        Location::File(path) => Ok(FetchResult::Loaded(load_file(path).await?)),
        Location::Remote { url, kind, token } => {
            let request = RemoteRequest { url, kind, token, timeout: config.timeout() };
            request.fetch(client, if_modified_since).await
        }
    }
}

async fn load_file(path: &Path) -> Result<LoadedDatafile, DatafileError> {
    let source = path.display().to_string();

    let bytes = tokio::fs::read(path)
        .await
        .map_err(|error| DatafileError::ReadFile { path: source.clone(), cause: error.to_string() })?;
    let datafile = Datafile::parse(&bytes).map_err(|error| content_error(&source, error))?;

    Ok(LoadedDatafile { datafile: Arc::new(datafile), last_modified: None, source, body: bytes.into() })
}

fn content_error(location: &str, error: DatafileError) -> DatafileError {
    DatafileError::Content { location: location.to_owned(), error: Box::new(error) }
}

/// One GET request for a remote datafile.
struct RemoteRequest<'a> {
    url: Url,
    kind: RemoteKind,
    token: Option<&'a str>,
    timeout: Duration,
}

impl RemoteRequest<'_> {
    async fn fetch(
        &self,
        client: &reqwest::Client,
        if_modified_since: Option<&str>,
    ) -> Result<FetchResult, DatafileError> {
        let display_url = redact_url(&self.url);

        let mut request = client.get(self.url.clone()).timeout(self.timeout);
        if let Some(token) = self.token {
            request = request.header(AUTHORIZATION, bearer_header(token)?);
        }
        if let Some(since) = if_modified_since {
            // The exact string the server sent as Last-Modified, as RFC 9110 recommends.
            if let Ok(value) = HeaderValue::from_str(since) {
                request = request.header(IF_MODIFIED_SINCE, value);
            }
        }
        let response = request.send().await.map_err(|error| self.transport_error(&display_url, error))?;

        let status = response.status();
        if status == StatusCode::NOT_MODIFIED && if_modified_since.is_some() {
            return Ok(FetchResult::NotModified);
        }
        if !status.is_success() {
            return Err(self.status_error(display_url, status));
        }

        let last_modified =
            response.headers().get(LAST_MODIFIED).and_then(|value| value.to_str().ok()).map(str::to_owned);
        let body = response.bytes().await.map_err(|error| self.transport_error(&display_url, error))?;
        let datafile = Datafile::parse(&body).map_err(|error| content_error(&display_url, error))?;

        Ok(FetchResult::Loaded(LoadedDatafile {
            datafile: Arc::new(datafile),
            last_modified,
            source: display_url,
            body,
        }))
    }

    fn transport_error(&self, display_url: &str, error: reqwest::Error) -> DatafileError {
        if error.is_timeout() {
            return DatafileError::TimedOut { url: display_url.to_owned(), timeout_secs: self.timeout.as_secs_f64() };
        }
        // reqwest puts the URL into its message, and this error names the redacted URL itself.
        DatafileError::Request { url: display_url.to_owned(), cause: error_chain(&error.without_url()) }
    }

    fn status_error(&self, url: String, status: StatusCode) -> DatafileError {
        let code = status.as_u16();
        match code {
            401 | 403 => DatafileError::AuthenticationFailed { url, status: code, hint: self.authentication_hint() },
            404 => DatafileError::NotFound { url, hint: self.not_found_hint() },
            _ => DatafileError::HttpStatus { url, status: code, hint: status_hint(status) },
        }
    }

    fn authentication_hint(&self) -> &'static str {
        match (self.kind, self.token.is_some()) {
            (RemoteKind::SdkKey, true) => {
                "check the access token and the SDK key: the token must be a datafile access token of the SDK \
                 key's environment"
            }
            (RemoteKind::SdkKey, false) => {
                "check the SDK key, and if the environment is secure, set datafile.access_token"
            }
            (RemoteKind::Url, _) => {
                "check datafile.url; for a secure environment use datafile.sdk_key with datafile.access_token"
            }
        }
    }

    fn not_found_hint(&self) -> &'static str {
        match self.kind {
            RemoteKind::SdkKey => "the SDK key is wrong or its environment has no datafile; check datafile.sdk_key",
            RemoteKind::Url => "check datafile.url",
        }
    }
}

fn status_hint(status: StatusCode) -> &'static str {
    if status == StatusCode::TOO_MANY_REQUESTS {
        "the server is rate limiting requests; try again later"
    } else if status.is_server_error() {
        "the server failed; try again later"
    } else {
        "check the datafile URL or SDK key"
    }
}

/// Builds the `Authorization` header, marked sensitive so HTTP logging leaves it out.
fn bearer_header(token: &str) -> Result<HeaderValue, DatafileError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        invalid_config("datafile.access_token contains characters that an HTTP header cannot carry".to_owned())
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// Joins an error's message with the messages of its sources, outermost first.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::sync::Mutex;

    use axum::extract::{Request, State};
    use axum::http::HeaderMap;
    use axum::response::{IntoResponse, Response};
    use axum::Router;

    use crate::transforms::optimizely::datafile::Region;

    /// A distinctive token, searched for in every error message.
    const TOKEN: &str = "tok-SECRET-7f3a9c-do-not-leak";

    const FIXTURE: &str = "../shared/fixtures/datafiles/java-valid-project-config-v4.json";

    const DEACTIVATED: &str = "// This Optimizely project has been deactivated.";

    const LAST_MODIFIED_VALUE: &str = "Wed, 31 Jan 2024 12:00:00 GMT";

    fn fixture_text() -> String {
        std::fs::read_to_string(FIXTURE).unwrap_or_else(|error| panic!("cannot read {FIXTURE}: {error}"))
    }

    /// One canned response of the test server.
    #[derive(Clone)]
    struct Reply {
        status: u16,
        body: String,
        last_modified: Option<&'static str>,
        delay: Duration,
    }

    impl Reply {
        fn new(status: u16, body: impl Into<String>) -> Reply {
            Reply { status, body: body.into(), last_modified: None, delay: Duration::ZERO }
        }
    }

    /// A request the test server received: its path and its `Authorization` header.
    #[derive(Debug, Clone, PartialEq)]
    struct Received {
        path: String,
        authorization: Option<String>,
    }

    #[derive(Default)]
    struct ServerState {
        replies: HashMap<String, Reply>,
        received: Mutex<Vec<Received>>,
    }

    struct TestServer {
        base_url: String,
        state: Arc<ServerState>,
    }

    impl TestServer {
        /// Starts a server on 127.0.0.1 that responds to each path in `replies`, and with 404 to any other path.
        async fn start(replies: &[(&str, Reply)]) -> TestServer {
            let replies = replies.iter().map(|(path, reply)| (path.to_string(), reply.clone())).collect();
            let state = Arc::new(ServerState { replies, received: Mutex::default() });

            let router = Router::new().fallback(reply_to).with_state(state.clone());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address: SocketAddr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, router).await });

            TestServer { base_url: format!("http://{address}"), state }
        }

        fn received(&self) -> Vec<Received> {
            self.state.received.lock().unwrap().clone()
        }
    }

    async fn reply_to(State(state): State<Arc<ServerState>>, request: Request) -> Response {
        let path = request.uri().path().to_owned();
        let authorization =
            request.headers().get("authorization").map(|value| value.to_str().unwrap_or("<invalid>").to_owned());
        state.received.lock().unwrap().push(Received { path: path.clone(), authorization });

        let Some(reply) = state.replies.get(&path).cloned() else {
            return (StatusCode::NOT_FOUND, "no such path").into_response();
        };
        tokio::time::sleep(reply.delay).await;

        let mut headers = HeaderMap::new();
        if let Some(value) = reply.last_modified {
            headers.insert("last-modified", value.parse().unwrap());
        }
        (StatusCode::from_u16(reply.status).unwrap(), headers, reply.body).into_response()
    }

    /// Builds a client that ignores proxy environment variables, so requests go straight to the test server.
    fn client() -> reqwest::Client {
        reqwest::Client::builder().no_proxy().build().unwrap()
    }

    fn config_from_toml(text: &str) -> DatafileConfig {
        toml::from_str(text).unwrap_or_else(|error| panic!("invalid test config: {error}"))
    }

    fn sdk_key_config(server: &TestServer, sdk_key: &str, token: Option<&str>) -> DatafileConfig {
        DatafileConfig {
            path: None,
            url: None,
            sdk_key: Some(sdk_key.to_owned()),
            access_token: token.map(str::to_owned),
            refresh_interval_secs: 300.0,
            timeout_secs: 5.0,
            cdn_url: Some(server.base_url.clone()),
            authenticated_cdn_url: Some(format!("{}/auth-host/", server.base_url)),
        }
    }

    fn url_config(url: String) -> DatafileConfig {
        config_from_toml(&format!("url = {url:?}"))
    }

    fn assert_no_token(message: &str) {
        assert!(!message.contains(TOKEN), "the token leaked into: {message}");
        assert!(!message.contains("SECRET"), "part of the token leaked into: {message}");
    }

    #[tokio::test]
    async fn sdk_key_loads_from_cdn() {
        let reply = Reply { last_modified: Some(LAST_MODIFIED_VALUE), ..Reply::new(200, fixture_text()) };
        let server = TestServer::start(&[("/datafiles/KeyA_1-x.json", reply)]).await;

        let loaded = load_datafile(&sdk_key_config(&server, "KeyA_1-x", None), &client()).await.unwrap();

        assert_eq!(loaded.datafile.account_id, "2360254204");
        assert_eq!(loaded.datafile.revision, "1480511547");
        assert_eq!(loaded.datafile.event_id("basic_event"), Some("3785620495"));
        assert_eq!(loaded.last_modified.as_deref(), Some(LAST_MODIFIED_VALUE));
        assert_eq!(loaded.source, format!("{}/datafiles/KeyA_1-x.json", server.base_url));
        let expected = Received { path: "/datafiles/KeyA_1-x.json".to_owned(), authorization: None };
        assert_eq!(server.received(), vec![expected]);
    }

    #[tokio::test]
    async fn access_token_uses_auth_path_and_header() {
        let server =
            TestServer::start(&[("/auth-host/datafiles/auth/KeyB.json", Reply::new(200, fixture_text()))]).await;

        let loaded = load_datafile(&sdk_key_config(&server, "KeyB", Some(TOKEN)), &client()).await.unwrap();

        assert_eq!(loaded.datafile.project_id, "3918735994");
        assert_eq!(loaded.source, format!("{}/auth-host/datafiles/auth/KeyB.json", server.base_url));
        assert_eq!(loaded.last_modified, None);
        assert_no_token(&loaded.source);
        assert_no_token(&format!("{loaded:?}"));
        let received = server.received();
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].path, "/auth-host/datafiles/auth/KeyB.json");
        assert_eq!(received[0].authorization.as_deref(), Some(format!("Bearer {TOKEN}").as_str()));
    }

    #[tokio::test]
    async fn authentication_failure_names_fix_not_token() {
        for status in [401, 403] {
            let server =
                TestServer::start(&[("/auth-host/datafiles/auth/KeyC.json", Reply::new(status, "denied"))]).await;

            let error = load_datafile(&sdk_key_config(&server, "KeyC", Some(TOKEN)), &client()).await.unwrap_err();

            let url = format!("{}/auth-host/datafiles/auth/KeyC.json", server.base_url);
            let DatafileError::AuthenticationFailed { url: actual_url, status: actual_status, .. } = &error else {
                panic!("HTTP {status}: expected AuthenticationFailed, got {error:?}");
            };
            assert_eq!(actual_url, &url, "HTTP {status}");
            assert_eq!(*actual_status, status);
            let message = error.to_string();
            assert!(message.contains("authentication failed"), "{message}");
            assert!(message.contains(&url), "{message}");
            assert!(message.contains(&format!("HTTP {status}")), "{message}");
            assert!(message.contains("check the access token and the SDK key"), "{message}");
            assert_no_token(&message);
            assert_no_token(&format!("{error:?}"));
            assert_eq!(server.received()[0].authorization.as_deref(), Some(format!("Bearer {TOKEN}").as_str()));
        }
    }

    #[tokio::test]
    async fn forbidden_without_token_suggests_access_token() {
        let server = TestServer::start(&[("/datafiles/KeyD.json", Reply::new(403, "denied"))]).await;

        let error = load_datafile(&sdk_key_config(&server, "KeyD", None), &client()).await.unwrap_err();

        let message = error.to_string();
        assert!(message.contains("HTTP 403"), "{message}");
        assert!(message.contains("set datafile.access_token"), "{message}");
    }

    #[tokio::test]
    async fn not_found_names_sdk_key() {
        let server = TestServer::start(&[]).await;

        let error = load_datafile(&sdk_key_config(&server, "WrongKey", Some(TOKEN)), &client()).await.unwrap_err();

        let url = format!("{}/auth-host/datafiles/auth/WrongKey.json", server.base_url);
        assert!(matches!(&error, DatafileError::NotFound { url: actual, .. } if *actual == url), "{error:?}");
        let message = error.to_string();
        assert!(message.contains("not found (HTTP 404)"), "{message}");
        assert!(message.contains("SDK key is wrong"), "{message}");
        assert_no_token(&message);
    }

    #[tokio::test]
    async fn deactivated_project_fails_with_url() {
        let server = TestServer::start(&[("/datafiles/KeyE.json", Reply::new(200, DEACTIVATED))]).await;

        let error = load_datafile(&sdk_key_config(&server, "KeyE", None), &client()).await.unwrap_err();

        let url = format!("{}/datafiles/KeyE.json", server.base_url);
        let expected = DatafileError::Content { location: url.clone(), error: Box::new(DatafileError::Deactivated) };
        assert_eq!(error, expected);
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("datafile {url}: the Optimizely project has been deactivated")),
            "{message}"
        );
    }

    #[tokio::test]
    async fn html_body_fails_as_not_json() {
        let html = "<html><body>Service Unavailable</body></html>";
        let server = TestServer::start(&[("/auth-host/datafiles/auth/KeyF.json", Reply::new(200, html))]).await;

        let error = load_datafile(&sdk_key_config(&server, "KeyF", Some(TOKEN)), &client()).await;

        let message = error.unwrap_err().to_string();
        assert!(message.contains("not JSON"), "{message}");
        assert!(message.contains("<html><body>Service Unavailable"), "{message}");
        assert_no_token(&message);
    }

    #[tokio::test]
    async fn unsupported_version_fails_with_url() {
        let body = fixture_text().replacen("\"version\": \"4\"", "\"version\": \"5\"", 1);
        let server = TestServer::start(&[("/v5.json", Reply::new(200, body))]).await;

        let error = load_datafile(&url_config(format!("{}/v5.json", server.base_url)), &client()).await.unwrap_err();

        let message = error.to_string();
        assert!(message.contains("/v5.json"), "{message}");
        assert!(message.contains("unsupported datafile version \"5\""), "{message}");
    }

    #[tokio::test]
    async fn url_source_loads_as_given() {
        let server = TestServer::start(&[("/custom/datafile.json", Reply::new(200, fixture_text()))]).await;
        let url = format!("{}/custom/datafile.json", server.base_url);

        let loaded = load_datafile(&url_config(url.clone()), &client()).await.unwrap();

        assert_eq!(loaded.source, url);
        assert_eq!(loaded.datafile.region, Region::Us);
        let expected = Received { path: "/custom/datafile.json".to_owned(), authorization: None };
        assert_eq!(server.received(), vec![expected]);
    }

    #[tokio::test]
    async fn server_error_names_status() {
        let server = TestServer::start(&[("/datafile.json", Reply::new(503, "busy"))]).await;

        let error =
            load_datafile(&url_config(format!("{}/datafile.json", server.base_url)), &client()).await.unwrap_err();

        assert!(matches!(error, DatafileError::HttpStatus { status: 503, .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.contains("HTTP 503"), "{message}");
        assert!(message.contains("try again later"), "{message}");
    }

    #[tokio::test]
    async fn slow_server_times_out() {
        let slow = Reply { delay: Duration::from_secs(5), ..Reply::new(200, fixture_text()) };
        let server = TestServer::start(&[("/slow.json", slow)]).await;
        let mut config = url_config(format!("{}/slow.json", server.base_url));
        config.timeout_secs = 0.2;

        let started = std::time::Instant::now();
        let error = load_datafile(&config, &client()).await.unwrap_err();

        assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
        assert!(matches!(error, DatafileError::TimedOut { .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.contains("timed out after 0.2 s"), "{message}");
        assert!(message.contains("/slow.json"), "{message}");
    }

    #[tokio::test]
    async fn refused_connection_names_cause() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let url = format!("http://{address}/datafile.json");

        let error = load_datafile(&url_config(url.clone()), &client()).await.unwrap_err();

        let DatafileError::Request { url: actual, cause } = &error else {
            panic!("expected Request, got {error:?}");
        };
        assert_eq!(actual, &url);
        assert!(!cause.is_empty());
        assert!(!cause.contains(&url), "the URL appears once, outside the cause: {cause}");
    }

    #[tokio::test]
    async fn url_password_is_redacted() {
        let server = TestServer::start(&[]).await;
        let address = server.base_url.trim_start_matches("http://");
        let config = url_config(format!("http://user:{TOKEN}@{address}/missing.json"));

        let error = load_datafile(&config, &client()).await.unwrap_err();

        let message = error.to_string();
        assert!(message.contains("user:REDACTED@"), "{message}");
        assert_no_token(&message);
        assert_no_token(&format!("{config:?}"));
    }

    #[tokio::test]
    async fn path_source_reads_fixture() {
        let config = config_from_toml(&format!("path = {FIXTURE:?}"));

        let loaded = load_datafile(&config, &client()).await.unwrap();

        assert_eq!(loaded.source, FIXTURE);
        assert_eq!(loaded.last_modified, None);
        assert_eq!(loaded.datafile.attribute_id("house"), Some("553339214"));
    }

    #[tokio::test]
    async fn missing_file_names_path() {
        let config = config_from_toml("path = \"no/such/datafile.json\"");

        let error = load_datafile(&config, &client()).await.unwrap_err();

        assert!(matches!(error, DatafileError::ReadFile { .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.contains("cannot read datafile no/such/datafile.json"), "{message}");
        assert!(message.contains("check the datafile.path setting"), "{message}");
    }

    #[tokio::test]
    async fn invalid_file_names_path() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("datafile.json");
        std::fs::write(&path, "{\"version\": \"4\"}").unwrap();
        let config = DatafileConfig { path: Some(path.clone()), ..config_from_toml("path = \"x\"") };

        let error = load_datafile(&config, &client()).await.unwrap_err();

        let message = error.to_string();
        assert!(message.starts_with(&format!("datafile {}: ", path.display())), "{message}");
        assert!(message.contains("required field `accountId` is missing"), "{message}");
    }

    #[tokio::test]
    async fn invalid_config_sends_no_request() {
        let server = TestServer::start(&[]).await;
        let mut config = sdk_key_config(&server, "KeyG", None);
        config.url = Some(format!("{}/datafile.json", server.base_url));

        let error = load_datafile(&config, &client()).await.unwrap_err();

        assert!(matches!(error, DatafileError::InvalidConfig { .. }), "{error:?}");
        assert!(error.to_string().contains("set only one of"), "{error}");
        assert_eq!(server.received(), vec![]);
    }

    #[test]
    fn config_defaults() {
        let config = config_from_toml("sdk_key = \"Key\"");
        assert_eq!(config.refresh_interval_secs, 300.0);
        assert_eq!(config.timeout_secs, 10.0);
        assert_eq!(config.cdn_url, None);
        assert_eq!(config.validate(), Vec::<String>::new());
    }

    #[test]
    fn config_rejects_unknown_fields() {
        let error = toml::from_str::<DatafileConfig>("sdk_key = \"Key\"\nrefresh_secs = 10").unwrap_err().to_string();
        assert!(error.contains("unknown field `refresh_secs`"), "{error}");
    }

    #[test]
    fn config_debug_hides_token() {
        let config = config_from_toml(&format!("sdk_key = \"Key\"\naccess_token = {TOKEN:?}"));
        let debug = format!("{config:?}");
        assert!(debug.contains("access_token: Some(\"<redacted>\")"), "{debug}");
        assert_no_token(&debug);
    }

    #[test]
    fn default_sdk_key_urls() {
        let plain = config_from_toml("sdk_key = \"AbC123\"");
        assert_eq!(
            plain.sdk_key_url("AbC123", false).unwrap().as_str(),
            "https://cdn.optimizely.com/datafiles/AbC123.json"
        );

        let secure = config_from_toml(&format!("sdk_key = \"AbC123\"\naccess_token = {TOKEN:?}"));
        assert_eq!(
            secure.sdk_key_url("AbC123", true).unwrap().as_str(),
            "https://config.optimizely.com/datafiles/auth/AbC123.json"
        );
    }

    #[test]
    fn validate_reports_each_problem() {
        let cases: &[(&str, &str)] = &[
            ("", "set one of `path`, `url` or `sdk_key`"),
            (
                "path = \"a.json\"\nurl = \"https://example.test/d.json\"",
                "set only one of `path`, `url` or `sdk_key`, but `path` and `url` are set",
            ),
            ("url = \"https://example.test/d.json\"\nsdk_key = \"K\"", "but `url` and `sdk_key` are set"),
            ("path = \"a.json\"\naccess_token = \"t\"", "datafile.access_token is set without datafile.sdk_key"),
            (
                "url = \"https://example.test/d.json\"\naccess_token = \"t\"",
                "datafile.access_token is set without datafile.sdk_key",
            ),
            ("path = \"\"", "datafile.path is empty"),
            ("sdk_key = \"\"", "datafile.sdk_key is empty"),
            ("sdk_key = \"../etc/passwd\"", "datafile.sdk_key \"../etc/passwd\" contains characters other than"),
            ("sdk_key = \"K\"\naccess_token = \"\"", "datafile.access_token is empty"),
            ("sdk_key = \"K\"\naccess_token = \"abc def\"", "datafile.access_token contains whitespace"),
            ("url = \"not a url\"", "datafile.url \"not a url\" is not a valid URL"),
            (
                "url = \"ftp://example.test/d.json\"",
                "datafile.url \"ftp://example.test/d.json\" must be an http:// or https:// URL",
            ),
            (
                "sdk_key = \"K\"\ncdn_url = \"file:///tmp\"",
                "datafile.cdn_url \"file:///tmp\" must be an http:// or https:// URL",
            ),
            (
                "sdk_key = \"K\"\nauthenticated_cdn_url = \"://x\"",
                "datafile.authenticated_cdn_url \"://x\" is not a valid URL",
            ),
            ("sdk_key = \"K\"\ntimeout_secs = 0.0", "datafile.timeout_secs is 0; set a positive number"),
            ("sdk_key = \"K\"\ntimeout_secs = -1.0", "datafile.timeout_secs is -1"),
            ("sdk_key = \"K\"\ntimeout_secs = nan", "datafile.timeout_secs is NaN"),
            ("sdk_key = \"K\"\ntimeout_secs = inf", "datafile.timeout_secs is inf"),
            ("sdk_key = \"K\"\nrefresh_interval_secs = 0", "datafile.refresh_interval_secs is 0;"),
        ];
        for (toml_text, expected) in cases {
            let problems = config_from_toml(toml_text).validate();
            assert_eq!(problems.len(), 1, "{toml_text:?}: {problems:?}");
            assert!(problems[0].contains(expected), "{toml_text:?}: {problems:?}");
        }
    }

    #[test]
    fn validate_collects_all_problems() {
        let config = config_from_toml("path = \"\"\nurl = \"bad\"\naccess_token = \"\"\ntimeout_secs = 0.0");
        let problems = config.validate();
        assert_eq!(problems.len(), 6, "{problems:?}");
    }

    #[test]
    fn validate_never_quotes_token() {
        let config = config_from_toml(&format!("url = \"https://example.test/d.json\"\naccess_token = \"{TOKEN} \""));
        for problem in config.validate() {
            assert_no_token(&problem);
        }
    }

    #[test]
    fn valid_configs_pass() {
        let cases = [
            "path = \"datafile.json\"",
            "url = \"https://cdn.optimizely.com/datafiles/K.json\"",
            "sdk_key = \"K\"",
            "sdk_key = \"K\"\naccess_token = \"abc.DEF-123\"",
            "sdk_key = \"K\"\ncdn_url = \"http://127.0.0.1:8080/prefix/\"\ntimeout_secs = 0.5\nrefresh_interval_secs = 1",
        ];
        for toml_text in cases {
            assert_eq!(config_from_toml(toml_text).validate(), Vec::<String>::new(), "{toml_text:?}");
        }
    }

    #[test]
    fn unset_sdk_key_variable_not_checked() {
        let config = config_from_toml("sdk_key = \"${OPTIMIZELY_SDK_KEY}\"");
        assert_eq!(config.validate(), Vec::<String>::new());

        let config = config_from_toml("sdk_key = \"Abc/123\"");
        assert_eq!(config.validate().len(), 1);
    }
}
