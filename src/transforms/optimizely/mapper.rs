//! Maps one Segment message to its outcome with one datafile.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde_json::Value;

use super::borrowed::{BorrowedObject, BorrowedValue};
use super::config::{MappingConfig, NestedTags, OptimizelyTransformConfig, UnknownEventKeys};
use super::datafile::Datafile;
use super::excerpt::excerpt;
use super::fields;
use super::message_uuid::conversion_uuid_borrowed;
use super::number::{json_kind, parse_numeric_value, parse_revenue, parse_revenue_text, RevenueUnit};
use super::path::PathList;
use super::timestamp::{parse_timestamp, parse_timestamp_text, TimestampUnit};
use crate::event::json::{self, EventFields};
use crate::event::{
    BatchKey, Conversion, DeletionRequest, EncodedConversion, Snapshot, SnapshotEvent, TagsBuilder, Visitor,
};

/// The room for a message's visitor entry beyond the length of the message's text. The benchmark's
/// entries are at most 220 bytes longer than their messages.
pub(crate) const ENTRY_EXTRA_BYTES: usize = 512;

/// The settings the mapper needs, independent of the datafile.
#[derive(Debug, Clone)]
pub struct MapperSettings {
    /// The `client_name` sent in every request.
    pub client_name: String,
    /// The unit of `revenue` in messages.
    pub revenue_unit: RevenueUnit,
    /// The unit of integer timestamps.
    pub timestamp_unit: TimestampUnit,
    /// The handling of event keys missing from the datafile.
    pub unknown_event_keys: UnknownEventKeys,
    /// The handling of array and object tag values.
    pub nested_tags: NestedTags,
    /// Field paths.
    pub mapping: MappingConfig,
    /// Segment event name to Optimizely event key, looked up for every track message, so hashed
    /// with FxHash instead of SipHash.
    pub event_keys: FxHashMap<String, String>,
    /// Maximum length in bytes of the event name, the visitor id and the uuid.
    pub max_id_bytes: usize,
    /// Maximum number of keys read from the tags object and from the attributes object each.
    pub max_properties: usize,
}

impl From<&OptimizelyTransformConfig> for MapperSettings {
    fn from(config: &OptimizelyTransformConfig) -> MapperSettings {
        MapperSettings {
            client_name: config.client_name.clone(),
            revenue_unit: config.revenue_unit,
            timestamp_unit: config.timestamp_unit,
            unknown_event_keys: config.unknown_event_keys,
            nested_tags: config.nested_tags,
            mapping: config.mapping.clone(),
            event_keys: config.event_keys.iter().map(|(from, to)| (from.clone(), to.clone())).collect(),
            max_id_bytes: config.max_id_bytes,
            max_properties: config.max_properties,
        }
    }
}

/// Why a message produced no conversion and was not skipped: the dead-letter reason and a message that
/// names the offending value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Machine-readable reason: `not_an_object`, `missing_type`, `missing_event_key`,
    /// `unknown_event_key`, `missing_user_id`, `invalid_timestamp` or `id_too_long`.
    pub reason: &'static str,
    /// Human-readable message naming the value and what to do.
    pub message: String,
}

/// The reason a message was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// A message type that carries no conversion, such as `identify`.
    MessageType(String),
    /// An event key not in the datafile, with `unknown_event_keys = "skip"`.
    UnknownEventKey(String),
}

/// Problems that removed a field but still let the conversion be sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MapWarnings {
    /// 1 when `revenue` was present but not convertible, so it was left out.
    pub invalid_revenue: u32,
    /// 1 when `value` was present but not numeric, so it was left out.
    pub invalid_value: u32,
    /// Tags removed because they were arrays or objects.
    pub removed_tags: u32,
    /// Traits left out because their key is unknown to the datafile or their value has the wrong type.
    pub removed_attributes: u32,
    /// Tags and traits left out because their object had more than `max_properties` keys.
    pub excess_properties: u32,
}

/// The outcome of mapping one message.
#[derive(Debug, Clone, PartialEq)]
pub enum MapOutcome {
    /// A `track` message became a conversion.
    Conversion(Conversion, MapWarnings),
    /// A `delete` message became a deletion request.
    Deletion(DeletionRequest),
    /// The message is intentionally not sent.
    Skipped(SkipReason),
    /// The message cannot be mapped.
    Rejected(Rejection),
}

/// Maps messages with one datafile. A new datafile gets a new mapper, so every conversion of a mapper
/// carries the same revision and ids.
#[derive(Debug, Clone)]
pub struct Mapper {
    settings: Arc<MapperSettings>,
    datafile: Arc<Datafile>,
    batch_key: Arc<BatchKey>,
    /// For each datafile attribute by key, its id and the JSON text of its entry up to the value.
    /// Written once here, an entry's start is one copy instead of three strings checked for
    /// escapes. That cut the transform's instructions per message from 31,200 to 30,700 (`valgrind
    /// --tool=callgrind`).
    attribute_prefixes: Arc<FxHashMap<String, (String, Vec<u8>)>>,
}

impl Mapper {
    /// Creates a mapper for `datafile`.
    pub fn new(settings: Arc<MapperSettings>, datafile: Arc<Datafile>) -> Mapper {
        let batch_key = Arc::new(BatchKey {
            endpoint: datafile.event_api_endpoint().to_owned(),
            account_id: datafile.account_id.clone(),
            project_id: datafile.project_id.clone(),
            revision: datafile.revision.clone(),
            client_name: settings.client_name.clone(),
            client_version: env!("CARGO_PKG_VERSION").to_owned(),
            anonymize_ip: datafile.anonymize_ip,
            enrich_decisions: true,
        });
        let mut attribute_prefixes: FxHashMap<String, (String, Vec<u8>)> = datafile
            .attributes()
            .map(|(key, id)| (key.to_owned(), (id.to_owned(), json::attribute_prefix(id, key, "custom"))))
            .collect();
        // Most conversions carry these two, with their key as their id. Their prefixes cut
        // `borrowed_parse_map_encoded` from 1.42 to 1.38 µs a message.
        for key in [fields::USER_AGENT_ATTRIBUTE, fields::BOT_FILTERING_ATTRIBUTE] {
            attribute_prefixes
                .entry(key.to_owned())
                .or_insert_with(|| (key.to_owned(), json::attribute_prefix(key, key, "custom")));
        }
        Mapper { settings, datafile, batch_key, attribute_prefixes: Arc::new(attribute_prefixes) }
    }

    /// Returns the datafile this mapper uses.
    pub fn datafile(&self) -> &Arc<Datafile> {
        &self.datafile
    }

    /// Maps one Segment message.
    pub fn map(&self, message: &Value) -> MapOutcome {
        let arena = bumpalo::Bump::new();
        self.map_borrowed(&BorrowedValue::from_value(message, &arena))
    }

    /// Maps one Segment message parsed with [`BorrowedValue::parse`].
    pub fn map_borrowed(&self, message: &BorrowedValue) -> MapOutcome {
        match self.message_type(message) {
            Ok("track") => self.map_track(message),
            Ok("delete") => self.map_delete(message),
            Ok(other) => MapOutcome::Skipped(SkipReason::MessageType(other.to_owned())),
            Err(rejection) => rejection,
        }
    }

    /// Maps one Segment message parsed with [`BorrowedValue::parse`] as [`Mapper::map_borrowed`]
    /// does, and writes a conversion as its visitor entry without building its [`Visitor`]. Other
    /// outcomes are the error.
    ///
    /// The attributes are written straight from the message, with no string or `serde_json::Value`
    /// of their own. That cut the relay's instructions per event by 6% (`valgrind --tool=callgrind`,
    /// 5,000 messages end to end), and the end-to-end benchmark went from 428,000 events/s to
    /// between 457,000 and 467,000.
    ///
    /// `text_len` is the length of the message's text: the visitor entry's buffer gets room for it
    /// plus 512 bytes (`ENTRY_EXTRA_BYTES`).
    pub fn map_borrowed_encoded(
        &self,
        message: &BorrowedValue,
        text_len: usize,
    ) -> Result<(EncodedConversion, MapWarnings), MapOutcome> {
        let mut output = Vec::with_capacity(text_len + ENTRY_EXTRA_BYTES);
        let warnings = self.encode_borrowed(message, &mut output)?;
        Ok((EncodedConversion::from_visitor_json(self.batch_key.clone(), output), warnings))
    }

    /// Appends the visitor entry of a track message to `output`, as [`Mapper::map_borrowed_encoded`]
    /// writes it, or returns the outcome of other messages and leaves `output` as it was. The entry
    /// belongs in a request with the top-level fields of [`Mapper::batch_key`].
    pub fn encode_borrowed(&self, message: &BorrowedValue, output: &mut Vec<u8>) -> Result<MapWarnings, MapOutcome> {
        match self.message_type(message) {
            Ok("track") => {
                let track = self.track_fields(message)?;
                Ok(self.encode_track(message, track, output))
            }
            _ => Err(self.map_borrowed(message)),
        }
    }

    /// Returns the top-level fields and the endpoint of the requests that carry this mapper's
    /// conversions.
    pub fn batch_key(&self) -> &Arc<BatchKey> {
        &self.batch_key
    }

    /// Returns the message type, or the outcome of a message without a usable one.
    fn message_type<'a>(&self, message: &BorrowedValue<'a>) -> Result<&'a str, MapOutcome> {
        let BorrowedValue::Object(object) = message else {
            let kind = json_kind(&message.to_value());
            return Err(reject("not_an_object", format!("the message is a JSON {kind}, not an object")));
        };

        match object.get("type") {
            Some(BorrowedValue::String(message_type)) if !message_type.is_empty() => Ok(message_type),
            Some(other) if *other != BorrowedValue::Null => Err(reject(
                "missing_type",
                format!("`type` is a JSON {}, not a string such as \"track\"", json_kind(&other.to_value())),
            )),
            _ => Err(reject(
                "missing_type",
                "the message has no `type`; Segment messages carry one such as \"track\"".to_owned(),
            )),
        }
    }

    fn map_track(&self, message: &BorrowedValue) -> MapOutcome {
        let track = match self.track_fields(message) {
            Ok(track) => track,
            Err(outcome) => return outcome,
        };
        let mut warnings = track.warnings;
        let mut tags = TagsBuilder::with_capacity(256);
        self.write_tags(message, &mut warnings, &mut tags);
        let event = SnapshotEvent {
            entity_id: track.event_id.to_owned(),
            key: track.key.to_owned(),
            timestamp: track.timestamp,
            uuid: track.uuid,
            revenue: track.revenue,
            value: track.value,
            tags: tags.finish(),
        };
        let attributes = fields::attribute_list(
            message,
            &self.settings.mapping,
            &self.datafile,
            self.settings.max_properties,
            &mut warnings,
        );
        let visitor = Visitor {
            visitor_id: track.visitor_id,
            attributes,
            snapshots: vec![Snapshot { decisions: Vec::new(), events: vec![event] }],
        };
        MapOutcome::Conversion(Conversion { batch_key: self.batch_key.clone(), visitor }, warnings)
    }

    /// Appends the visitor entry of a track message, whose other fields are in `track`, to `output`.
    fn encode_track(&self, message: &BorrowedValue, track: TrackFields, output: &mut Vec<u8>) -> MapWarnings {
        let mut warnings = track.warnings;
        json::write_visitor_start(output, &track.visitor_id);

        fields::attributes(
            message,
            &self.settings.mapping,
            &self.datafile,
            self.settings.max_properties,
            &mut warnings,
            |id, key, value| match self.attribute_prefixes.get(key) {
                Some((prefix_id, prefix)) if prefix_id == id => {
                    json::write_attribute_with_prefix(output, prefix, value)
                }
                _ => json::write_attribute_entry(output, id, key, "custom", value),
            },
        );

        json::write_snapshot_start(output);
        let event = EventFields {
            entity_id: track.event_id,
            key: track.key,
            timestamp: track.timestamp,
            uuid: &track.uuid,
            revenue: track.revenue,
            value: track.value.as_ref(),
        };
        json::write_event_start(output, &event);

        // The tags are written in place, with no string of their own.
        let mut tags = TagsBuilder::in_buffer(std::mem::take(output));
        self.write_tags(message, &mut warnings, &mut tags);
        *output = tags.finish_in_buffer();
        json::write_visitor_end(output);
        warnings
    }

    /// Checks a track message and reads the fields of its conversion other than the attributes, or
    /// returns the outcome of a message that cannot be sent.
    fn track_fields<'m>(&'m self, message: &'m BorrowedValue<'m>) -> Result<TrackFields<'m>, MapOutcome> {
        let mapping = &self.settings.mapping;

        let Some(name) = fields::first_string(message, &mapping.event_key) else {
            return Err(reject(
                "missing_event_key",
                format!("the message has no event name at {}; track messages need one", mapping.event_key),
            ));
        };
        if let Some(rejection) = self.check_id_length("event name", &mapping.event_key, name) {
            return Err(rejection);
        }
        let key = self.settings.event_keys.get(name).map(String::as_str).unwrap_or(name);
        let Some(event_id) = self.datafile.event_id(key) else {
            return Err(self.unknown_event_key(name, key));
        };

        let Some(visitor_id) = fields::visitor_id(message, &mapping.user_id) else {
            return Err(reject(
                "missing_user_id",
                format!(
                    "the message has no usable user id at {}; give userId or anonymousId as a non-empty string or an integer",
                    mapping.user_id
                ),
            ));
        };
        if let Some(rejection) = self.check_id_length("user id", &mapping.user_id, &visitor_id) {
            return Err(rejection);
        }

        let timestamp = match first_value(message, &mapping.timestamp) {
            None => {
                return Err(reject(
                    "invalid_timestamp",
                    format!(
                    "the message has no timestamp at {}; the time of the conversion is required and is never guessed",
                    mapping.timestamp
                ),
                ))
            }
            Some(value) => {
                let parsed = match value {
                    BorrowedValue::String(text) => parse_timestamp_text(text, self.settings.timestamp_unit),
                    other => parse_timestamp(&other.to_value(), self.settings.timestamp_unit),
                };
                match parsed {
                    Ok(timestamp) => timestamp,
                    Err(error) => return Err(reject("invalid_timestamp", error.to_string())),
                }
            }
        };

        let uuid = conversion_uuid_borrowed(first_value(message, &mapping.uuid), || message.to_value());
        if let Some(rejection) = self.check_id_length("message id", &mapping.uuid, &uuid) {
            return Err(rejection);
        }

        let mut warnings = MapWarnings::default();
        let revenue = first_value(message, &mapping.revenue).and_then(|value| {
            let revenue = match value {
                BorrowedValue::String(text) => parse_revenue_text(text, self.settings.revenue_unit).ok(),
                other => parse_revenue(&other.to_value(), self.settings.revenue_unit).ok(),
            };
            warnings.invalid_revenue = u32::from(revenue.is_none());
            revenue
        });
        let value = first_value(message, &mapping.value).and_then(|value| {
            let number = parse_numeric_value(&value.to_value()).ok();
            warnings.invalid_value = u32::from(number.is_none());
            number
        });
        Ok(TrackFields { visitor_id, event_id, key, timestamp, uuid, revenue, value, warnings })
    }

    fn unknown_event_key(&self, name: &str, key: &str) -> MapOutcome {
        if self.settings.unknown_event_keys == UnknownEventKeys::Skip {
            return MapOutcome::Skipped(SkipReason::UnknownEventKey(key.to_owned()));
        }
        let renamed = if name == key { String::new() } else { format!(" (renamed from `{name}`)") };
        reject(
            "unknown_event_key",
            format!(
                "event key `{key}`{renamed} is not in datafile revision {} of project {}; create the event in Optimizely, or map the name with the `event_keys` table",
                self.datafile.revision, self.datafile.project_id
            ),
        )
    }

    /// Writes the tags of a message into `tags`.
    fn write_tags(&self, message: &BorrowedValue, warnings: &mut MapWarnings, tags: &mut TagsBuilder) {
        let Some(BorrowedValue::Object(properties)) = first_value(message, &self.settings.mapping.tags) else {
            return;
        };

        let max_properties = self.settings.max_properties;
        warnings.excess_properties += properties.len().saturating_sub(max_properties) as u32;

        // Members whose text serde_json would write as it is are copied from the message's text,
        // consecutive ones in one piece: `run` is the first and last index of those not yet
        // written. Against writing each key and value, that cut `borrowed_parse_map_encoded` from
        // 1.64 to 1.42 µs a message.
        let verbatim = !properties.text().is_empty();
        let mut run = None;
        // The parse merged repeated keys, so each key comes once.
        for (index, (key, value)) in properties.iter().take(max_properties).enumerate() {
            let excluded = key == "revenue" || key == "value";
            let scalar = matches!(value, BorrowedValue::String(_) | BorrowedValue::Number(_) | BorrowedValue::Bool(_));
            if verbatim && scalar && !excluded {
                run = Some((run.map_or(index, |(first, _)| first), index));
                continue;
            }
            if let Some((first, last)) = run.take() {
                self.write_tag_run(properties, first, last, warnings, tags);
            }
            if !excluded {
                self.write_tag(key, value, warnings, tags);
            }
        }
        if let Some((first, last)) = run {
            self.write_tag_run(properties, first, last, warnings, tags);
        }
    }

    /// Writes members `first` to `last` of `properties` as tags, copied from the message's text.
    fn write_tag_run(
        &self,
        properties: &BorrowedObject,
        first: usize,
        last: usize,
        warnings: &mut MapWarnings,
        tags: &mut TagsBuilder,
    ) {
        match properties.members_text(first, last) {
            Some(text) => tags.add_members_text(text),
            // The members' text is found whenever the object's text is known, so this only guards
            // against losing tags.
            None => {
                for (key, value) in properties.iter().skip(first).take(last + 1 - first) {
                    self.write_tag(key, value, warnings, tags);
                }
            }
        }
    }

    /// Writes one member of the properties as a tag, or leaves it out.
    fn write_tag(&self, key: &str, value: &BorrowedValue, warnings: &mut MapWarnings, tags: &mut TagsBuilder) {
        match value {
            BorrowedValue::Null => {}
            BorrowedValue::String(text) => tags.add_string(key, text),
            BorrowedValue::Number(number) => tags.add_raw(key, number),
            BorrowedValue::Bool(boolean) => tags.add_raw(key, if *boolean { "true" } else { "false" }),
            BorrowedValue::Array(_) | BorrowedValue::Object(_) => match self.settings.nested_tags {
                NestedTags::Drop => warnings.removed_tags += 1,
                NestedTags::JsonString => tags.add_string(key, &value.to_value().to_string()),
            },
        }
    }

    /// Rejects an id longer than `max_id_bytes`, naming the field and the paths it was read from.
    fn check_id_length(&self, field: &str, paths: &PathList, id: &str) -> Option<MapOutcome> {
        let max_id_bytes = self.settings.max_id_bytes;
        if id.len() <= max_id_bytes {
            return None;
        }
        Some(reject(
            "id_too_long",
            format!(
                "the {field} at {paths} is {} bytes long, more than max_id_bytes ({max_id_bytes}); it starts with {}; fix the sender, or raise max_id_bytes if such ids are valid",
                id.len(),
                excerpt(&Value::String(id.to_owned()))
            ),
        ))
    }

    fn map_delete(&self, message: &BorrowedValue) -> MapOutcome {
        let paths = &self.settings.mapping.user_id;
        match fields::visitor_id(message, paths) {
            Some(identifier) => match self.check_id_length("user id", paths, &identifier) {
                Some(rejection) => rejection,
                None => MapOutcome::Deletion(DeletionRequest { identifier, message: message.to_value() }),
            },
            None => reject(
                "missing_user_id",
                format!(
                    "the delete message has no usable user id at {}; a deletion needs the userId or anonymousId of the user",
                    self.settings.mapping.user_id
                ),
            ),
        }
    }
}

/// The fields of a track message's conversion other than its attributes and tags.
struct TrackFields<'m> {
    visitor_id: String,
    event_id: &'m str,
    key: &'m str,
    timestamp: i64,
    uuid: String,
    revenue: Option<i64>,
    value: Option<serde_json::Number>,
    warnings: MapWarnings,
}

fn reject(reason: &'static str, message: String) -> MapOutcome {
    MapOutcome::Rejected(Rejection { reason, message })
}

/// Returns the first value along `paths` that is not missing, `null`, an empty string, or an empty
/// object or array.
pub(crate) fn first_value<'a, 'b>(message: &'a BorrowedValue<'b>, paths: &PathList) -> Option<&'a BorrowedValue<'b>> {
    paths.0.iter().filter_map(|path| path.lookup(message)).find(|value| !fields::is_empty(value))
}
