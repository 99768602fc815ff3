//! Publishing many events: a stream of results in input order, or a summary, with at most
//! `max_in_flight` acks outstanding and memory that does not grow with the number of events.

use futures::stream::FuturesOrdered;
use futures::{FutureExt, Stream, StreamExt};

use super::{PublishError, Published, Publisher};
use crate::envelope::EventOptions;
use crate::event::Event;
use crate::tenant::IntoTenantId;

/// What a [`publish_many`](Publisher::publish_many) call stored: counts, and only the failed
/// events one by one (so a call of millions of events keeps no result per event).
#[derive(Debug, Default)]
pub struct PublishSummary {
    /// Events the stream acknowledged, duplicates included.
    pub stored: u64,
    /// Of those, events it already held (the same id inside its duplicate window).
    pub duplicates: u64,
    /// Stream sequence of the first event stored.
    pub first_sequence: Option<u64>,
    /// Stream sequence of the last event stored.
    pub last_sequence: Option<u64>,
    /// The events that failed, by position in the input (from 0), in input order. Each error
    /// names its event's id ([`Error::event_id`](crate::Error::event_id)): publishing it again
    /// with that id stores it once.
    pub failed: Vec<(usize, PublishError)>,
}

impl PublishSummary {
    /// True when every event was stored.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }

    /// `Ok` with the summary when every event was stored, else the first failure.
    pub fn into_result(mut self) -> Result<Self, PublishError> {
        if self.failed.is_empty() {
            Ok(self)
        } else {
            Err(self.failed.swap_remove(0).1)
        }
    }

    fn add(&mut self, position: usize, result: Result<Published, PublishError>) {
        match result {
            Ok(p) => {
                self.stored += 1;
                self.duplicates += u64::from(p.duplicate);
                self.first_sequence.get_or_insert(p.stream_sequence);
                self.last_sequence = Some(p.stream_sequence);
            }
            Err(e) => self.failed.push((position, e)),
        }
    }
}

impl Publisher {
    /// Publishes many events and returns a summary: how many were stored (and were
    /// duplicates), the first and last stream sequence, and each failed event. Events are sent
    /// in input order (so they are stored in that order), with up to `max_in_flight` acks
    /// outstanding; a failed event does not stop the others. Memory does not grow with the
    /// number of events: the input is read as the acks come back.
    ///
    /// For the result of every event (its id and sequence) use
    /// [`publish_stream`](Self::publish_stream).
    pub async fn publish_many<E, T, I>(&self, events: I) -> PublishSummary
    where
        E: Event,
        T: IntoTenantId,
        I: IntoIterator<Item = (T, E)>,
    {
        self.publish_many_with(
            events
                .into_iter()
                .map(|(tenant, event)| (tenant, event, EventOptions::default())),
        )
        .await
    }

    /// [`publish_many`](Self::publish_many) with attributes per event, e.g. the caller's own
    /// ids, so a caller that retries after a timeout re-sends the same ids.
    pub async fn publish_many_with<E, T, I>(&self, events: I) -> PublishSummary
    where
        E: Event,
        T: IntoTenantId,
        I: IntoIterator<Item = (T, E, EventOptions)>,
    {
        let mut summary = PublishSummary::default();
        let mut results = std::pin::pin!(self.publish_stream(events));
        let mut position = 0;
        while let Some(result) = results.next().await {
            summary.add(position, result);
            position += 1;
        }
        summary
    }

    /// Publishes many events and yields the result of each, in input order, as its ack
    /// arrives. Up to `max_in_flight` acks are outstanding; the next events are read from the
    /// input only as results are taken, so memory does not grow with the number of events.
    ///
    /// ```no_run
    /// # use conveyor::{Event, Publisher};
    /// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    /// # struct Tick { n: u64 }
    /// # impl Event for Tick { const TYPE: &'static str = "tick"; }
    /// # async fn run(publisher: Publisher) {
    /// use futures::StreamExt;
    /// let mut results = std::pin::pin!(publisher.publish_stream(
    ///     (0..1_000_000).map(|n| ("acme", Tick { n }, conveyor::EventOptions::default())),
    /// ));
    /// while let Some(result) = results.next().await {
    ///     match result {
    ///         Ok(published) => println!("{} stored as #{}", published.id, published.stream_sequence),
    ///         Err(e) => eprintln!("{:?} failed: {e}", e.event_id()),
    ///     }
    /// }
    /// # }
    /// ```
    pub fn publish_stream<'a, E, T, I>(
        &'a self,
        events: I,
    ) -> impl Stream<Item = Result<Published, PublishError>> + 'a
    where
        E: Event,
        T: IntoTenantId,
        I: IntoIterator<Item = (T, E, EventOptions)>,
        I::IntoIter: 'a,
    {
        let state = (events.into_iter(), FuturesOrdered::new(), false);
        futures::stream::unfold(
            state,
            move |(mut events, mut in_flight, mut read_all)| async move {
                while !read_all && in_flight.len() < self.max_in_flight.max(1) {
                    let Some((tenant, event, options)) = events.next() else {
                        read_all = true;
                        break;
                    };
                    let pending = match self.prepare_event(tenant, &event, &options) {
                        Ok(prepared) => match self.start(prepared).await {
                            Ok(pending) => pending.finish().boxed(),
                            Err(e) => futures::future::ready(Err(e)).boxed(),
                        },
                        Err(e) => futures::future::ready(Err(e)).boxed(),
                    };
                    in_flight.push_back(pending);
                }
                let result = self.counted(in_flight.next().await?);
                Some((result, (events, in_flight, read_all)))
            },
        )
    }
}
