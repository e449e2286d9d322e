//! The running `optimizely` transform: routes each message's outcome to an output.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine;
use serde_json::{Map, Value};

use super::config::OptimizelyTransformConfig;
use super::datafile::Datafile;
use super::mapper::{MapOutcome, MapWarnings, Mapper, MapperSettings, Rejection, SkipReason};
use crate::ack::EventStatus;
use crate::event::{DeadLetter, Event, Payload};
use crate::log_limit::LogLimiter;
use crate::topology::{Input, Output};

/// Counters of problems that removed a field but still let the conversion be sent.
#[derive(Debug, Default)]
pub struct WarningCounters {
    /// Revenues left out because they were not convertible.
    pub invalid_revenue: AtomicU64,
    /// Values left out because they were not numeric.
    pub invalid_value: AtomicU64,
    /// Tags removed because they were arrays or objects.
    pub removed_tags: AtomicU64,
    /// Traits left out.
    pub removed_attributes: AtomicU64,
    /// Tags and traits left out because their object had more than `max_properties` keys.
    pub excess_properties: AtomicU64,
}

impl WarningCounters {
    fn add(&self, warnings: &MapWarnings) {
        self.invalid_revenue.fetch_add(u64::from(warnings.invalid_revenue), Ordering::Relaxed);
        self.invalid_value.fetch_add(u64::from(warnings.invalid_value), Ordering::Relaxed);
        self.removed_tags.fetch_add(u64::from(warnings.removed_tags), Ordering::Relaxed);
        self.removed_attributes.fetch_add(u64::from(warnings.removed_attributes), Ordering::Relaxed);
        self.excess_properties.fetch_add(u64::from(warnings.excess_properties), Ordering::Relaxed);
    }
}

/// The `optimizely` transform: maps messages with the current datafile, which can be swapped while it
/// runs.
pub struct OptimizelyTransform {
    id: String,
    settings: Arc<MapperSettings>,
    mapper: ArcSwap<Mapper>,
    warnings: WarningCounters,
}

/// The three outputs of the transform.
pub struct TransformOutputs {
    /// Conversions.
    pub conversions: Output,
    /// Dead-letter records.
    pub dropped: Output,
    /// Deletion requests.
    pub deletions: Output,
}

impl OptimizelyTransform {
    /// Creates the transform with its first datafile.
    pub fn new(
        id: impl Into<String>,
        config: &OptimizelyTransformConfig,
        datafile: Arc<Datafile>,
    ) -> OptimizelyTransform {
        let settings = Arc::new(MapperSettings::from(config));
        let mapper = Mapper::new(settings.clone(), datafile);
        OptimizelyTransform {
            id: id.into(),
            settings,
            mapper: ArcSwap::from_pointee(mapper),
            warnings: WarningCounters::default(),
        }
    }

    /// Returns the component id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Returns the datafile in use.
    pub fn datafile(&self) -> Arc<Datafile> {
        self.mapper.load().datafile().clone()
    }

    /// Replaces the datafile. Messages mapped afterwards use the new one; conversions already mapped
    /// keep the revision they were mapped with.
    pub fn set_datafile(&self, datafile: Arc<Datafile>) {
        self.mapper.store(Arc::new(Mapper::new(self.settings.clone(), datafile)));
    }

    /// Returns the counters of removed fields.
    pub fn warnings(&self) -> &WarningCounters {
        &self.warnings
    }

    /// Maps one Segment message with the current datafile.
    pub fn map_message(&self, message: &Value) -> MapOutcome {
        let outcome = self.mapper.load().map(message);
        if let MapOutcome::Conversion(_, warnings) = &outcome {
            self.warnings.add(warnings);
        }
        outcome
    }

    /// Consumes `input` until it closes, sending each outcome to its output.
    pub async fn run(&self, mut input: Input, mut outputs: TransformOutputs) {
        let mut limiter = LogLimiter::new(Duration::from_secs(60));
        while let Some(events) = input.recv().await {
            let mut conversions = Vec::with_capacity(events.len());
            let mut dropped = Vec::new();
            let mut deletions = Vec::new();

            // One datafile per chunk, so a chunk never mixes revisions.
            let mapper = self.mapper.load_full();
            for event in events {
                self.route(&mapper, event, &mut conversions, &mut dropped, &mut deletions, &mut limiter);
            }

            for (output, chunk) in [
                (&mut outputs.conversions, conversions),
                (&mut outputs.dropped, dropped),
                (&mut outputs.deletions, deletions),
            ] {
                if let Err(error) = output.send(chunk).await {
                    tracing::error!(component_id = %self.id, %error, "a downstream component stopped; events are undelivered");
                }
            }
        }
    }

    fn route(
        &self,
        mapper: &Mapper,
        event: Event,
        conversions: &mut Vec<Event>,
        dropped: &mut Vec<Event>,
        deletions: &mut Vec<Event>,
        limiter: &mut LogLimiter,
    ) {
        let Event { payload, finalizer, origin } = event;
        let message = match payload {
            Payload::Message(message) => message,
            Payload::Unparsed(unparsed) => {
                let rejection = Rejection { reason: unparsed.reason, message: unparsed.error };
                let mut record = self.dead_letter(rejection, Value::String(unparsed.text), finalizer, origin, limiter);
                if let (Some(bytes), Payload::DeadLetter(dead_letter)) = (unparsed.bytes, &mut record.payload) {
                    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
                    dead_letter.details.insert("event_base64".to_owned(), Value::String(encoded));
                }
                dropped.push(record);
                return;
            }
            other => {
                let rejection = Rejection {
                    reason: "unsupported_event",
                    message: "the transform accepts Segment messages only; connect it to a source".to_owned(),
                };
                dropped.push(self.dead_letter(rejection, other.to_json(), finalizer, origin, limiter));
                return;
            }
        };

        match mapper.map(&message) {
            MapOutcome::Conversion(conversion, warnings) => {
                self.warnings.add(&warnings);
                if warnings.excess_properties > 0 {
                    if let Some(count) = limiter.check("excess_properties") {
                        tracing::warn!(component_id = %self.id, count, max_properties = self.settings.max_properties, "left out the tags and traits past max_properties of messages with more keys");
                    }
                }
                conversions.push(Event { payload: Payload::Conversion(conversion), finalizer, origin });
            }
            MapOutcome::Deletion(deletion) => {
                deletions.push(Event { payload: Payload::Deletion(deletion), finalizer, origin })
            }
            MapOutcome::Skipped(reason) => {
                if let SkipReason::UnknownEventKey(key) = &reason {
                    if let Some(count) = limiter.check(&format!("skip:{key}")) {
                        tracing::info!(component_id = %self.id, event_key = %key, count, "skipped messages with an event key not in the datafile");
                    }
                }
                finalizer.finalize(EventStatus::Skipped);
            }
            MapOutcome::Rejected(rejection) => {
                dropped.push(self.dead_letter(rejection, message, finalizer, origin, limiter))
            }
        }
    }

    fn dead_letter(
        &self,
        rejection: Rejection,
        original: Value,
        finalizer: crate::ack::EventFinalizer,
        origin: Option<Arc<Map<String, Value>>>,
        limiter: &mut LogLimiter,
    ) -> Event {
        // Unknown event keys are limited per key, so that a key that vanished in a datafile update is
        // reported on its own; other reasons are limited per reason.
        let limit_key = match rejection.reason {
            "unknown_event_key" => format!("{}:{}", rejection.reason, rejection.message),
            reason => reason.to_owned(),
        };
        if let Some(count) = limiter.check(&limit_key) {
            tracing::warn!(component_id = %self.id, reason = rejection.reason, count, example = %rejection.message, "dead-lettered messages");
        }
        finalizer.update_with_reason(EventStatus::DeadLettered, rejection.reason);
        let record = DeadLetter {
            reason: rejection.reason.to_owned(),
            message: rejection.message,
            component: self.id.clone(),
            event: original,
            details: crate::event::origin_details(origin.as_deref()),
        };
        Event { payload: Payload::DeadLetter(record), finalizer, origin }
    }
}
