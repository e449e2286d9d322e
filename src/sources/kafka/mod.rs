//! The `kafka` source: reads Segment messages from Kafka topics as a member of a consumer group, and
//! commits offsets only past events that reached their final outcome.
//!
//! - [`config`]: the settings and the librdkafka configuration built from them.
//! - [`offsets`]: per partition, the offset below which every event is final.
//! - `group`: the thread that serves rebalances and commits offsets.
//! - `reader`: the task that reads the partitions' queues and emits events.
//!
//! Delivery is at least once: after a crash, a rebalance that timed out, or an undelivered event, a
//! partition's next reader starts from the last committed offset and sends again the events after
//! it. They carry the same uuid, which the Event API de-duplicates.

pub mod config;
mod group;
pub mod offsets;
mod reader;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rdkafka::consumer::Consumer;

pub use self::config::KafkaSourceConfig;
use self::group::{GroupConsumer, GroupContext, Shared};
use self::offsets::Offsets;
use self::reader::Reader;
use super::{Emitter, SourceContext, SourceError};

impl KafkaSourceConfig {
    /// Joins the consumer group and reads until shutdown. Offsets are committed periodically, and a
    /// last time once the pipeline has drained.
    pub async fn run(&self, context: SourceContext) -> Result<(), SourceError> {
        let offsets = Arc::new(Offsets::new(&context.id, context.stats.clone()));
        let secrets = self
            .librdkafka_options
            .iter()
            .filter(|(name, value)| config::is_secret(name) && !value.0.is_empty())
            .map(|(_, value)| value.0.clone())
            .collect();
        let shared = Arc::new(Shared::new(&context.id, offsets.clone(), self.revoke_timeout(), secrets));

        let mut client_config = self.client_config();
        client_config.set_log_level(group::librdkafka_log_level());
        let consumer: GroupConsumer =
            client_config.create_with_context(GroupContext::new(shared.clone())).map_err(|error| {
                SourceError::Kafka { message: self.redact(&format!("cannot create the Kafka consumer: {error}")) }
            })?;
        let consumer = Arc::new(consumer);
        let _ = shared.consumer.set(Arc::downgrade(&consumer));

        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(|error| SourceError::Kafka {
            message: self.redact(&format!("cannot subscribe to the topics {topics:?}: {error}")),
        })?;
        tracing::info!(
            component_id = %context.id,
            topics = %self.topics.join(","),
            group_id = %self.group_id,
            bootstrap_servers = %self.bootstrap_servers,
            "joining the consumer group"
        );

        self.start_group_thread(&context, consumer, shared.clone())?;

        let emitter = Emitter::new(context.output, offsets, context.stats, "kafka");
        Reader::new(shared, emitter).run(&context.shutdown).await
    }

    /// Starts the thread that serves the consumer group, and a background task that stops it once
    /// the pipeline has drained and waits for its last commit.
    fn start_group_thread(
        &self,
        context: &SourceContext,
        consumer: Arc<GroupConsumer>,
        shared: Arc<Shared>,
    ) -> Result<(), SourceError> {
        let stop = Arc::new(AtomicBool::new(false));
        let (finished, wait_finished) = tokio::sync::oneshot::channel::<()>();
        let commit_interval = self.commit_interval();
        let thread_stop = stop.clone();
        std::thread::Builder::new()
            .name(format!("kafka-{}", context.id))
            .spawn(move || {
                group::run_group_thread(consumer, shared, commit_interval, thread_stop);
                let _ = finished.send(());
            })
            .map_err(|error| SourceError::Kafka {
                message: format!("cannot start the Kafka consumer thread: {error}"),
            })?;

        let drained = context.drained.clone();
        context.background.spawn(async move {
            drained.cancelled().await;
            stop.store(true, Ordering::Release);
            let _ = wait_finished.await;
        });
        Ok(())
    }
}
