//! Settings of the `optimizely` transform.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::datafile::Datafile;
use super::datafile_source::DatafileConfig;
use super::number::RevenueUnit;
use super::path::PathList;
use super::timestamp::TimestampUnit;

/// Settings of the `optimizely` transform.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizelyTransformConfig {
    /// The source of the Optimizely datafile: exactly one of `path`, `url` or `sdk_key`.
    pub datafile: DatafileConfig,
    /// When set, must equal the datafile's `accountId`, else startup fails. Catches a datafile from the
    /// wrong account.
    #[serde(default)]
    pub account_id: Option<String>,
    /// The `client_name` sent in every request. Default `optimizely-relay`.
    #[serde(default = "default_client_name")]
    pub client_name: String,
    /// The unit of `revenue` in messages. `cents` (the default) reads integer cents, as Segment's
    /// destination expects. `dollars` reads currency units such as 19.99, converted exactly to 1999.
    #[serde(default)]
    pub revenue_unit: RevenueUnit,
    /// The unit of JSON integer timestamps: `milliseconds` (default) or `seconds`. RFC 3339 strings
    /// are read as they are.
    #[serde(default)]
    pub timestamp_unit: TimestampUnit,
    /// The handling of a `track` message whose event key is not in the datafile. `dead_letter` (the
    /// default) writes a record to the `dropped` output, and `skip` counts the message as skipped.
    #[serde(default)]
    pub unknown_event_keys: UnknownEventKeys,
    /// The handling of array and object values in event tags. `drop` (the default) removes and counts
    /// them, and `json_string` sends them as their JSON text.
    #[serde(default)]
    pub nested_tags: NestedTags,
    /// The message paths each field is read from.
    #[serde(default)]
    pub mapping: MappingConfig,
    /// Renames of Segment event names to Optimizely event keys, applied before the datafile lookup.
    #[serde(default)]
    pub event_keys: BTreeMap<String, String>,
    /// Maximum length in bytes of a message's event name, visitor id and uuid (`messageId`). A
    /// message with a longer one is dead-lettered with the reason `id_too_long`. Default 1024.
    #[serde(default = "default_max_id_bytes")]
    pub max_id_bytes: usize,
    /// Maximum number of keys read from a message's tags object, and separately from its attributes
    /// object. Keys past it, in message order, are left out and counted. Default 1000.
    #[serde(default = "default_max_properties")]
    pub max_properties: usize,
}

fn default_client_name() -> String {
    "optimizely-relay".to_owned()
}

/// The default of `max_id_bytes`. Real ids are short (a UUID has 36 characters), so 1 KiB leaves
/// room for any id scheme, while a longer value is most likely a bug of the sender, such as a whole
/// object written into the field.
pub const DEFAULT_MAX_ID_BYTES: usize = 1024;

/// The default of `max_properties`. Segment's tracking API takes messages of at most 32 KB, which
/// hold far fewer keys than this with real values, so the limit only bounds the work and the request
/// size that a malformed message can cause.
pub const DEFAULT_MAX_PROPERTIES: usize = 1000;

fn default_max_id_bytes() -> usize {
    DEFAULT_MAX_ID_BYTES
}

fn default_max_properties() -> usize {
    DEFAULT_MAX_PROPERTIES
}

/// The handling of a message whose event key is not in the datafile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownEventKeys {
    /// Send the message to the `dropped` output with the reason `unknown_event_key`.
    #[default]
    DeadLetter,
    /// Count the message as skipped.
    Skip,
}

/// The handling of array and object values in event tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NestedTags {
    /// Remove them and count them.
    #[default]
    Drop,
    /// Send them as their compact JSON text.
    JsonString,
}

/// The paths each field is read from; each is one path or a list whose first non-empty value wins.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MappingConfig {
    /// The event name. Default `$.event`.
    pub event_key: PathList,
    /// The visitor id. Default `["$.userId", "$.anonymousId"]`.
    pub user_id: PathList,
    /// The conversion time. Default `$.timestamp`.
    pub timestamp: PathList,
    /// The id Optimizely de-duplicates on. Default `$.messageId`.
    pub uuid: PathList,
    /// The revenue. Default `$.properties.revenue`.
    pub revenue: PathList,
    /// The numeric value. Default `$.properties.value`.
    pub value: PathList,
    /// The event tags object. Default `$.properties`.
    pub tags: PathList,
    /// The visitor attributes object. Default `$.context.traits`.
    pub attributes: PathList,
    /// The user agent, sent as the `$opt_user_agent` attribute. Default `$.context.userAgent`.
    pub user_agent: PathList,
}

impl Default for MappingConfig {
    fn default() -> MappingConfig {
        MappingConfig {
            event_key: paths(&["$.event"]),
            user_id: paths(&["$.userId", "$.anonymousId"]),
            timestamp: paths(&["$.timestamp"]),
            uuid: paths(&["$.messageId"]),
            revenue: paths(&["$.properties.revenue"]),
            value: paths(&["$.properties.value"]),
            tags: paths(&["$.properties"]),
            attributes: paths(&["$.context.traits"]),
            user_agent: paths(&["$.context.userAgent"]),
        }
    }
}

fn paths(texts: &[&str]) -> PathList {
    // The default paths are constants that parse.
    PathList(texts.iter().filter_map(|text| text.parse().ok()).collect())
}

impl OptimizelyTransformConfig {
    /// Returns the checks that need more than one option.
    pub fn validate(&self) -> Vec<String> {
        let mut errors: Vec<String> = self.datafile.validate();
        if self.client_name.trim().is_empty() {
            errors.push("`client_name` is empty; leave it out for the default `optimizely-relay`".to_owned());
        }
        if self.max_id_bytes == 0 {
            errors.push("invalid value for `max_id_bytes`: 0; give a number of bytes above 0".to_owned());
        }
        if self.max_properties == 0 {
            errors.push("invalid value for `max_properties`: 0; give a number of keys above 0".to_owned());
        }
        for (from, to) in &self.event_keys {
            if to.is_empty() {
                errors.push(format!("`event_keys.\"{from}\"` maps to an empty key; give the Optimizely event key"));
            }
        }
        errors
    }

    /// Reads and checks a datafile given by `path`, and its account against `account_id`. Datafiles
    /// from a URL or SDK key are not fetched: this check never uses the network.
    pub fn check_local_datafile(&self) -> Vec<String> {
        let Some(path) = &self.datafile.path else {
            return Vec::new();
        };
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) => {
                return vec![format!("cannot read `datafile.path` `{}`: {error}; check the path", path.display())]
            }
        };
        let datafile = match Datafile::parse(&bytes) {
            Ok(datafile) => datafile,
            Err(error) => return vec![format!("datafile `{}`: {error}", path.display())],
        };
        match &self.account_id {
            Some(expected) => match datafile.check_account_id(expected) {
                Ok(()) => Vec::new(),
                Err(error) => vec![format!("datafile `{}`: {error}", path.display())],
            },
            None => Vec::new(),
        }
    }

    /// Resolves a relative datafile path against `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        if let Some(path) = &mut self.datafile.path {
            *path = crate::config::resolve_path(base, path);
        }
    }
}
