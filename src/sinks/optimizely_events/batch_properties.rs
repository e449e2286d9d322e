//! Property tests of batching and of splitting rejected batches in halves: every conversion ends in
//! exactly one delivered request or one dead-letter record, and every request body respects
//! `max_events` and `max_bytes`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::Value;
use tokio::time::Instant;

use super::batch::{Batch, BatchError, BatchLimits, Batcher};
use crate::event::{BatchKey, Conversion, Event, Payload, Snapshot, SnapshotEvent, Tags, Visitor};

fn key(revision: &str) -> Arc<BatchKey> {
    Arc::new(BatchKey {
        endpoint: "https://logx.optimizely.com/v1/events".to_owned(),
        account_id: "100".to_owned(),
        project_id: "200".to_owned(),
        revision: revision.to_owned(),
        client_name: "optimizely-relay".to_owned(),
        client_version: "0.1.0".to_owned(),
        anonymize_ip: None,
        enrich_decisions: true,
    })
}

/// Builds a conversion whose visitor id is `id` and whose encoded size grows with `padding`.
fn conversion(key: &Arc<BatchKey>, id: &str, padding: usize) -> Event {
    let mut tags = serde_json::Map::new();
    tags.insert("padding".to_owned(), Value::String("x".repeat(padding)));
    let visitor = Visitor {
        visitor_id: id.to_owned(),
        attributes: Vec::new(),
        snapshots: vec![Snapshot {
            decisions: Vec::new(),
            events: vec![SnapshotEvent {
                entity_id: "9".to_owned(),
                key: "buy".to_owned(),
                timestamp: 1_700_000_000_000,
                uuid: id.to_owned(),
                revenue: None,
                value: None,
                tags: Tags::from_map(&tags),
            }],
        }],
    };
    Event::new(Payload::Conversion(Conversion { batch_key: key.clone(), visitor }))
}

fn visitor_id(event: &Event) -> String {
    match &event.payload {
        Payload::Conversion(conversion) => conversion.visitor.visitor_id.clone(),
        other => panic!("expected a conversion, got {other:?}"),
    }
}

/// Checks the limits of one request body and returns the visitor ids it contains, in order.
fn checked_body(batch: &Batch, limits: &BatchLimits) -> Result<Vec<String>, TestCaseError> {
    let body = batch.encode_body();
    prop_assert_eq!(body.len(), batch.encoded_len());
    prop_assert!(body.len() <= limits.max_bytes, "body of {} bytes over {}", body.len(), limits.max_bytes);
    prop_assert!(batch.len() >= 1 && batch.len() <= limits.max_events, "{} events", batch.len());

    let parsed: Value = serde_json::from_slice(&body).map_err(|error| TestCaseError::fail(error.to_string()))?;
    let visitors = parsed["visitors"].as_array().cloned().unwrap_or_default();
    prop_assert_eq!(visitors.len(), batch.len());
    Ok(visitors.iter().map(|visitor| visitor["visitor_id"].as_str().unwrap_or_default().to_owned()).collect())
}

/// The final place of one conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Delivered,
    /// Rejected by the API when sent alone.
    Rejected,
    /// Too large for any request, so never sent.
    TooLarge,
}

/// Delivers `batch` as the sink does when the API rejects every request that contains a `bad`
/// conversion: a rejected request of several conversions is split in halves and each half is sent
/// again, and a rejected single conversion is dead-lettered.
fn deliver(
    batch: Batch,
    bad: &[String],
    limits: &BatchLimits,
    outcomes: &mut BTreeMap<String, Vec<Outcome>>,
) -> Result<(), TestCaseError> {
    let mut pending = vec![batch];
    while let Some(batch) = pending.pop() {
        let ids = checked_body(&batch, limits)?;
        let rejected = ids.iter().any(|id| bad.contains(id));
        if rejected && batch.len() > 1 {
            let (first, second) = batch.split_in_half();
            let mut halves = checked_body(&first, limits)?;
            prop_assert_eq!(first.len(), ids.len() / 2);
            halves.extend(checked_body(&second, limits)?);
            prop_assert_eq!(&halves, &ids, "the halves keep the order");
            pending.push(second);
            pending.push(first);
            continue;
        }
        let outcome = if rejected { Outcome::Rejected } else { Outcome::Delivered };
        for event in batch.into_events() {
            outcomes.entry(visitor_id(&event)).or_default().push(outcome);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn every_event_ends_exactly_once(
        paddings in prop::collection::vec(0usize..400, 1..120),
        revisions in prop::collection::vec(0u8..3, 120),
        bad_every in 1usize..12,
        max_events in 1usize..20,
        max_bytes in 300usize..3000,
    ) {
        let limits = BatchLimits { max_events, max_bytes, timeout: Duration::from_secs(1) };
        let mut batcher = Batcher::new(limits.clone(), None);
        let keys: Vec<Arc<BatchKey>> = ["1", "2", "3"].into_iter().map(key).collect();
        let ids: Vec<String> = (0..paddings.len()).map(|index| format!("v{index:03}")).collect();
        let bad: Vec<String> = ids.iter().step_by(bad_every).cloned().collect();

        let mut outcomes: BTreeMap<String, Vec<Outcome>> = BTreeMap::new();
        let mut ready = Vec::new();
        let now = Instant::now();
        for (index, padding) in paddings.iter().enumerate() {
            let event = conversion(&keys[usize::from(revisions[index])], &ids[index], *padding);
            if let Err(unbatched) = batcher.push(event, now, &mut ready) {
                let is_too_large = matches!(unbatched.error, BatchError::TooLarge { .. });
                prop_assert!(is_too_large, "{:?}", unbatched.error);
                outcomes.entry(visitor_id(&unbatched.event)).or_default().push(Outcome::TooLarge);
            }
        }
        ready.extend(batcher.take_all());
        prop_assert_eq!(batcher.next_deadline(), None, "no batch stays open");

        for batch in ready {
            deliver(batch, &bad, &limits, &mut outcomes)?;
        }

        prop_assert_eq!(outcomes.len(), ids.len(), "every event has an outcome");
        for id in &ids {
            let ends = &outcomes[id];
            prop_assert_eq!(ends.len(), 1, "{} ended {:?}", id, ends);
            let expected = match ends[0] {
                Outcome::TooLarge => Outcome::TooLarge,
                _ if bad.contains(id) => Outcome::Rejected,
                _ => Outcome::Delivered,
            };
            prop_assert_eq!(ends[0], expected, "{}", id);
        }
    }

    #[test]
    fn too_large_only_when_alone_over_max_bytes(padding in 0usize..3000, max_bytes in 300usize..3000) {
        let limits = BatchLimits { max_events: 10, max_bytes, timeout: Duration::from_secs(1) };
        let mut batcher = Batcher::new(limits.clone(), None);
        let mut ready = Vec::new();
        let result = batcher.push(conversion(&key("1"), "v", padding), Instant::now(), &mut ready);

        let mut probe = Batcher::new(BatchLimits { max_bytes: usize::MAX, ..limits }, None);
        probe.push(conversion(&key("1"), "v", padding), Instant::now(), &mut ready).expect("no limit");
        let alone = probe.take_all().pop().expect("one batch").encoded_len();
        match result {
            Ok(()) => prop_assert!(alone <= max_bytes, "{} accepted over {}", alone, max_bytes),
            Err(unbatched) => prop_assert_eq!(unbatched.error, BatchError::TooLarge { body_len: alone, max_bytes }),
        }
    }
}
