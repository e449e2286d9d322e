//! Settings of the `kafka` source and the librdkafka configuration built from them.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use serde::Deserialize;

/// librdkafka properties that the source sets itself, with the option to use instead.
const RESERVED_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "set `bootstrap_servers` instead"),
    ("metadata.broker.list", "set `bootstrap_servers` instead"),
    ("group.id", "set `group_id` instead"),
    ("auto.offset.reset", "set `auto_offset_reset` instead"),
    ("enable.auto.commit", "the source commits offsets itself once the events before them reached their final outcome"),
    ("auto.commit.interval.ms", "set `commit_interval_secs` instead"),
    ("enable.auto.offset.store", "the source stores and commits offsets itself"),
];

/// Parts of property names whose values are secrets, such as `sasl.password` or
/// `ssl.key.password`. Their values never appear in logs, errors or `Debug` output.
const SECRET_NAME_PARTS: &[&str] = &["password", "secret", "token", "ssl.key.pem", "sasl.oauthbearer.config"];

/// The position where a group without a committed offset starts reading a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoOffsetReset {
    /// From the oldest message the broker still keeps.
    #[default]
    Earliest,
    /// From the next message produced after the group started.
    Latest,
}

impl AutoOffsetReset {
    fn as_str(self) -> &'static str {
        match self {
            AutoOffsetReset::Earliest => "earliest",
            AutoOffsetReset::Latest => "latest",
        }
    }
}

/// A librdkafka property value. TOML strings, integers, floats and booleans are accepted and passed
/// on as their text, so `fetch.wait.max.ms = 100` and `"100"` are the same.
#[derive(Clone, PartialEq, Eq)]
pub struct PropertyValue(pub String);

impl<'de> Deserialize<'de> for PropertyValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<PropertyValue, D::Error> {
        struct Visitor;

        impl serde::de::Visitor<'_> for Visitor {
            type Value = PropertyValue;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("a string, a number or a boolean")
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<PropertyValue, E> {
                Ok(PropertyValue(value.to_owned()))
            }

            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<PropertyValue, E> {
                Ok(PropertyValue(value.to_string()))
            }

            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<PropertyValue, E> {
                Ok(PropertyValue(value.to_string()))
            }

            fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<PropertyValue, E> {
                Ok(PropertyValue(value.to_string()))
            }

            fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<PropertyValue, E> {
                Ok(PropertyValue(value.to_string()))
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

/// Settings of the `kafka` source.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Comma-separated `host:port` list of brokers to bootstrap from, such as
    /// `kafka-1:9092,kafka-2:9092`.
    pub bootstrap_servers: String,
    /// Topics to read. A name starting with `^` is a regular expression matched against every topic.
    pub topics: Vec<String>,
    /// The consumer group. Relays with the same `group_id` share the topics' partitions, and the
    /// group's committed offsets are where a relay resumes.
    pub group_id: String,
    /// The start of a partition without a committed offset: `earliest` (default) or `latest`.
    #[serde(default)]
    pub auto_offset_reset: AutoOffsetReset,
    /// Seconds between offset commits. Default 5.
    #[serde(default = "default_commit_interval_secs")]
    pub commit_interval_secs: f64,
    /// Seconds a revocation waits for the events of the revoked partitions to reach their final
    /// outcome before it commits what is final and hands the partitions over. Default 10.
    #[serde(default = "default_revoke_timeout_secs")]
    pub revoke_timeout_secs: f64,
    /// librdkafka properties passed through unchanged, such as `security.protocol`,
    /// `sasl.mechanisms`, `sasl.username`, `sasl.password` or `ssl.ca.location`.
    #[serde(default)]
    pub librdkafka_options: BTreeMap<String, PropertyValue>,
}

fn default_commit_interval_secs() -> f64 {
    5.0
}

fn default_revoke_timeout_secs() -> f64 {
    10.0
}

impl std::fmt::Debug for KafkaSourceConfig {
    /// Formats the settings with the values of secret librdkafka properties redacted.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let options: BTreeMap<&str, &str> = self
            .librdkafka_options
            .iter()
            .map(|(name, value)| (name.as_str(), if is_secret(name) { "<redacted>" } else { value.0.as_str() }))
            .collect();
        formatter
            .debug_struct("KafkaSourceConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("topics", &self.topics)
            .field("group_id", &self.group_id)
            .field("auto_offset_reset", &self.auto_offset_reset)
            .field("commit_interval_secs", &self.commit_interval_secs)
            .field("revoke_timeout_secs", &self.revoke_timeout_secs)
            .field("librdkafka_options", &options)
            .finish()
    }
}

/// Returns whether the value of the librdkafka property `name` is a secret.
pub fn is_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_NAME_PARTS.iter().any(|part| name.contains(part))
}

impl KafkaSourceConfig {
    /// Returns the checks that need more than one option, including librdkafka's own check of every
    /// property. Nothing connects to a broker.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.bootstrap_servers.trim().is_empty() {
            errors
                .push("`bootstrap_servers` is empty; give the brokers as `host:port`, separated by commas".to_owned());
        }
        if self.topics.is_empty() {
            errors.push("`topics` is empty; list at least one topic to read".to_owned());
        }
        if self.topics.iter().any(|topic| topic.trim().is_empty()) {
            errors.push("`topics` contains an empty name; remove it or set its variable".to_owned());
        }
        if self.group_id.trim().is_empty() {
            errors.push("`group_id` is empty; give the consumer group the relays share".to_owned());
        }
        for (name, value) in
            [("commit_interval_secs", self.commit_interval_secs), ("revoke_timeout_secs", self.revoke_timeout_secs)]
        {
            if Duration::try_from_secs_f64(value).is_err() || value <= 0.0 {
                errors.push(format!("invalid value for `{name}`: {value}; give a positive number of seconds"));
            }
        }

        let mut reserved = false;
        for name in self.librdkafka_options.keys() {
            if let Some((_, fix)) = RESERVED_PROPERTIES.iter().find(|(reserved, _)| reserved == name) {
                errors.push(format!("`librdkafka_options.\"{name}\"` cannot be set: {fix}"));
                reserved = true;
            }
        }
        if !reserved {
            if let Err(error) = self.client_config().create_native_config() {
                errors.push(self.redact(&describe_config_error(&error)));
            }
        }
        errors
    }

    /// Returns the commit interval.
    pub fn commit_interval(&self) -> Duration {
        Duration::from_secs_f64(self.commit_interval_secs)
    }

    /// Returns how long a revocation waits for in-flight events.
    pub fn revoke_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.revoke_timeout_secs)
    }

    /// Builds the librdkafka configuration: the source's own properties, then `librdkafka_options`.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("group.id", &self.group_id)
            .set("auto.offset.reset", self.auto_offset_reset.as_str())
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("client.id", "optimizely-relay")
            // Each partition has its own queue, and librdkafka applies these prefetch limits per
            // queue. Its defaults (100000 messages, 64 MiB) would let memory grow with the partition
            // count; 2 MiB still fits thousands of Segment messages per partition.
            .set("queued.min.messages", "1000")
            .set("queued.max.messages.kbytes", "2048");

        for (name, value) in &self.librdkafka_options {
            config.set(name, &value.0);
        }
        config
    }

    /// Replaces the values of secret properties in `text` with `<redacted>`, for errors and log
    /// lines that may repeat a value.
    pub fn redact(&self, text: &str) -> String {
        let mut redacted = text.to_owned();
        for (name, value) in &self.librdkafka_options {
            if is_secret(name) && !value.0.is_empty() {
                redacted = redacted.replace(&value.0, "<redacted>");
            }
        }
        redacted
    }
}

/// Formats a librdkafka configuration error without the property's value when the property is a
/// secret. The caller still passes the result through [`KafkaSourceConfig::redact`], because
/// librdkafka's description can repeat the value.
pub fn describe_config_error(error: &rdkafka::error::KafkaError) -> String {
    match error {
        rdkafka::error::KafkaError::ClientConfig(_, description, name, _) if is_secret(name) => {
            format!("invalid librdkafka option `{name}` (its value is not shown because it is a secret): {description}")
        }
        rdkafka::error::KafkaError::ClientConfig(_, description, name, _) => {
            format!("invalid librdkafka option `{name}`: {description}")
        }
        other => format!("invalid librdkafka options: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(options: &[(&str, &str)]) -> KafkaSourceConfig {
        KafkaSourceConfig {
            bootstrap_servers: "127.0.0.1:9092".to_owned(),
            topics: vec!["segment-events".to_owned()],
            group_id: "relays".to_owned(),
            auto_offset_reset: AutoOffsetReset::Earliest,
            commit_interval_secs: 5.0,
            revoke_timeout_secs: 10.0,
            librdkafka_options: options
                .iter()
                .map(|(name, value)| (name.to_string(), PropertyValue(value.to_string())))
                .collect(),
        }
    }

    #[test]
    fn tls_and_sasl_properties_accepted() {
        let config = config(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
            ("sasl.username", "relay"),
            ("sasl.password", "hunter2"),
        ]);
        assert_eq!(config.validate(), Vec::<String>::new());

        let plain = self::config(&[("security.protocol", "SASL_SSL"), ("sasl.mechanisms", "PLAIN")]);
        assert_eq!(plain.validate(), Vec::<String>::new());
    }

    #[test]
    fn zstd_and_ssl_built_in() {
        let native = config(&[]).client_config().create_native_config().unwrap();
        let features = native.get("builtin.features").unwrap();
        for feature in ["ssl", "sasl_plain", "sasl_scram", "zstd", "gzip", "lz4", "snappy"] {
            assert!(features.split(',').any(|built_in| built_in == feature), "{feature} missing from {features}");
        }
    }

    #[test]
    fn reserved_property_rejected() {
        let errors = config(&[("enable.auto.commit", "true"), ("group.id", "other")]).validate();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("`librdkafka_options.\"enable.auto.commit\"` cannot be set"), "{errors:?}");
        assert!(errors[1].contains("set `group_id` instead"), "{errors:?}");
    }

    #[test]
    fn unknown_property_named_without_secret() {
        let errors = config(&[("sasl.pasword", "hunter2")]).validate();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("`sasl.pasword`"), "{errors:?}");
        assert!(!errors[0].contains("hunter2"), "{errors:?}");
    }

    #[test]
    fn invalid_secret_value_not_shown() {
        // `ssl.key.password` is a secret; an invalid `security.protocol` value is shown.
        let errors = config(&[("ssl.key.password", "hunter2"), ("security.protocol", "carrier_pigeon")]).validate();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("carrier_pigeon"), "{errors:?}");
        assert!(!errors[0].contains("hunter2"), "{errors:?}");
    }

    #[test]
    fn debug_redacts_secrets() {
        let text = format!("{:?}", config(&[("sasl.password", "hunter2"), ("sasl.username", "relay")]));
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("\"sasl.password\": \"<redacted>\""), "{text}");
        assert!(text.contains("\"sasl.username\": \"relay\""), "{text}");
    }

    #[test]
    fn redact_replaces_secret_values() {
        let config = config(&[("sasl.password", "hunter2")]);
        assert_eq!(config.redact("login with hunter2 failed"), "login with <redacted> failed");
    }

    #[test]
    fn numbers_and_booleans_become_text() {
        let config: KafkaSourceConfig = toml::from_str(
            r#"
bootstrap_servers = "127.0.0.1:9092"
topics = ["a"]
group_id = "g"
[librdkafka_options]
"fetch.wait.max.ms" = 100
"check.crcs" = true
"#,
        )
        .unwrap();
        assert_eq!(config.librdkafka_options["fetch.wait.max.ms"].0, "100");
        assert_eq!(config.librdkafka_options["check.crcs"].0, "true");
        assert_eq!(config.validate(), Vec::<String>::new());
    }
}
