//! The optional attributes of an event being published: id, time, correlation, trace, source,
//! headers, lane, delay and debounce.

use chrono::{DateTime, Utc};

/// Optional attributes of an event being published.
#[derive(Debug, Clone, Default)]
pub struct EventOptions {
    /// The event id; a new UUIDv7 when `None`. Also the `Nats-Msg-Id`, so re-publishing the same
    /// id inside the stream's duplicate window stores the event once.
    pub id: Option<String>,
    /// The event time; now when `None`.
    pub time: Option<DateTime<Utc>>,
    /// Correlation id: the id shared by every event of one causal chain.
    pub correlation_id: Option<String>,
    /// Causation id: the id of the event that caused this one.
    pub causation_id: Option<String>,
    /// W3C trace context.
    pub traceparent: Option<String>,
    /// The `source` attribute of this event, instead of the publisher's
    /// ([`Publisher::with_source`](crate::Publisher::with_source)).
    pub source: Option<String>,
    /// Extra NATS headers sent with the event (not part of the envelope).
    pub headers: Vec<(String, String)>,
    /// The lane to publish on (`events.<tenant>.<type>.~<lane>`); `None`: the default lane.
    /// Groups bound to a lane ([`Group::lane`](crate::Group::lane)) handle it, so urgent events
    /// skip the backlog of the default lane.
    pub lane: Option<String>,
    /// When the event becomes visible to groups (`None`: at once). A delayed event is stored
    /// now, as a server message schedule (see [`crate::delay`]), and survives restarts.
    pub deliver: Option<crate::delay::When>,
    /// Collapses a burst of events with the same key into one run (see
    /// [`debounce`](Self::debounce)).
    pub debounce: Option<crate::delay::Debounce>,
}

impl EventOptions {
    /// Sets the event id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
    /// Sets the `source` attribute of this event (instead of the publisher's).
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }
    /// Sets the event time.
    pub fn time(mut self, time: DateTime<Utc>) -> Self {
        self.time = Some(time);
        self
    }
    /// Sets the correlation id.
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }
    /// Sets the causation id.
    pub fn causation_id(mut self, id: impl Into<String>) -> Self {
        self.causation_id = Some(id.into());
        self
    }
    /// Sets the W3C `traceparent`.
    pub fn traceparent(mut self, tp: impl Into<String>) -> Self {
        self.traceparent = Some(tp.into());
        self
    }
    /// Publishes on a lane (see [`EventOptions::lane`](Self#structfield.lane)).
    pub fn lane(mut self, lane: impl Into<String>) -> Self {
        self.lane = Some(lane.into());
        self
    }
    /// Delivers the event `delay` after it is published (see [`crate::delay`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// let in_three_days = conveyor::EventOptions::default()
    ///     .id("review-reminder:order-1001")
    ///     .delay(Duration::from_secs(3 * 24 * 3600));
    /// # let _ = in_three_days;
    /// ```
    pub fn delay(mut self, delay: std::time::Duration) -> Self {
        self.deliver = Some(crate::delay::When::After(delay));
        self
    }
    /// Delivers the event at `time` (at once when `time` is not in the future).
    pub fn deliver_at(mut self, time: DateTime<Utc>) -> Self {
        self.deliver = Some(crate::delay::When::At(time));
        self
    }
    /// Debounces the event: a burst of events of this type and tenant with the same `key`, each
    /// published within `period` of the one before, becomes one run, of the burst's last event,
    /// `period` after it (through a message schedule that each publish replaces; see
    /// [`crate::delay`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// // Re-index a document once its edits pause for 30 s.
    /// let options = conveyor::EventOptions::default()
    ///     .debounce("doc-42", Duration::from_secs(30))
    ///     .debounce_max_wait(Duration::from_secs(300));
    /// # let _ = options;
    /// ```
    pub fn debounce(mut self, key: impl Into<String>, period: std::time::Duration) -> Self {
        self.debounce = Some(crate::delay::Debounce {
            key: key.into(),
            period,
            max_wait: None,
        });
        self
    }
    /// Runs a debounced burst at the latest `max_wait` after its first event, even while events
    /// keep coming (after [`debounce`](Self::debounce); without it, nothing happens).
    pub fn debounce_max_wait(mut self, max_wait: std::time::Duration) -> Self {
        if let Some(d) = &mut self.debounce {
            d.max_wait = Some(max_wait);
        }
        self
    }
    /// Adds a NATS header to the message.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}
