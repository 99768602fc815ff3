//! Bad input from publishers in any language: every such message reaches a terminal state with a
//! clear error, and none stops a worker.

use std::time::Duration;

use conveyor::{
    Context, DeadLetterKind, EventOptions, Group, HandlerError, HandlerOptions, HandlerResult,
    PublishErrorKind, Publisher, RetryPolicy, Worker,
};
use conveyor_tests::{
    Ping, Recorder, consumer_state, dead_letters, eventually, publish_raw, server,
};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

fn envelope(id: &str, data: &str, padding: usize) -> String {
    format!(
        r#"{{"specversion":"1.0","id":"{id}","source":"raw","type":"test.ping","tenantid":"acme","datacontenttype":"application/json","pad":"{}","data":{data}}}"#,
        "x".repeat(padding)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelopes_with_unusable_ids_are_dead_lettered_as_decode_errors() {
    let (_server, conn) = server().await;
    let recorder = Recorder::default();
    let worker = Worker::builder(&conn, recorder.clone())
        .group(
            Group::new("ids").handle(|_: Ping, ctx: Context<Recorder>| async move {
                ctx.state().record(ctx.event_id(), ctx.attempt(), "w");
                Ok::<(), HandlerError>(())
            }),
        )
        .build()
        .unwrap()
        .spawn();
    let long = "i".repeat(257);
    let bad_ids = ["", "a\\u0007b", "x\\r\\nNats-Msg-Id: y", long.as_str()];
    for id in bad_ids {
        publish_raw(
            &conn,
            "events.acme.test.ping",
            envelope(id, r#"{"n":1}"#, 0).as_bytes(),
        )
        .await;
    }
    let letters = dead_letters(&conn, bad_ids.len(), Duration::from_secs(10)).await;
    assert_eq!(letters.len(), bad_ids.len(), "{letters:?}");
    for letter in &letters {
        assert_eq!(letter.kind, DeadLetterKind::Decode, "{}", letter.error);
        assert!(letter.error.contains("event id"), "{}", letter.error);
    }
    assert!(recorder.all().is_empty(), "no handler ran");
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publisher_refuses_unusable_ids_and_header_values() {
    let (_server, conn) = server().await;
    let publisher = Publisher::new(&conn);
    let long = "i".repeat(257);
    for id in ["", "a\u{7}b", "x\r\nNats-Msg-Id: y", long.as_str()] {
        let e = publisher
            .publish_with("acme", &Ping { n: 1 }, EventOptions::default().id(id))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), PublishErrorKind::InvalidId, "{id:?}: {e}");
    }
    for (name, value) in [
        ("X-Note", "one\r\nNats-Msg-Id: forged"),
        ("X-Note", "a\nb"),
        ("Bad Name", "v"),
        ("Bad:Name", "v"),
        ("", "v"),
    ] {
        let e = publisher
            .publish_with(
                "acme",
                &Ping { n: 1 },
                EventOptions::default().header(name, value),
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind(), PublishErrorKind::InvalidHeader, "{name:?}: {e}");
    }
    assert_eq!(conveyor_tests::events_count(&conn).await, 0, "nothing sent");
    let ok = publisher
        .publish_with(
            "acme",
            &Ping { n: 1 },
            EventOptions::default()
                .id("order-1001")
                .header("X-Note", "tab\tis fine"),
        )
        .await
        .unwrap();
    assert!(!ok.duplicate);
}

/// An event whose `Deserialize` panics on `n == 13`.
#[derive(Debug, Serialize, JsonSchema)]
struct Touchy {
    n: u32,
}

impl<'de> Deserialize<'de> for Touchy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            n: u32,
        }
        let raw = Raw::deserialize(d)?;
        assert!(raw.n != 13, "unlucky number");
        Ok(Self { n: raw.n })
    }
}

impl conveyor::Event for Touchy {
    const TYPE: &'static str = "test.touchy";
}

/// A handler that is not an `async fn`: it panics before it returns its future.
fn eager(
    event: Ping,
    ctx: Context<Recorder>,
) -> futures::future::BoxFuture<'static, HandlerResult> {
    assert!(event.n != 13, "panicked before the first await");
    Box::pin(async move {
        ctx.state().record(ctx.event_id(), ctx.attempt(), "eager");
        Ok(())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_while_decoding_or_calling_a_handler_fails_that_delivery_only() {
    let (_server, conn) = server().await;
    let recorder = Recorder::default();
    let once = || HandlerOptions::default().retry(RetryPolicy::no_retry());
    let worker = Worker::builder(&conn, recorder.clone())
        .group(
            Group::new("fragile")
                .concurrency(1)
                .handle_with(
                    |e: Touchy, ctx: Context<Recorder>| async move {
                        ctx.state().record(
                            ctx.event_id(),
                            ctx.attempt(),
                            &format!("touchy {}", e.n),
                        );
                        Ok::<(), HandlerError>(())
                    },
                    once(),
                )
                .handle_with(eager, once()),
        )
        .build()
        .unwrap()
        .spawn();
    let publisher = Publisher::new(&conn);
    // The publisher's decode-back check runs the same `Deserialize`: it refuses the event with a
    // typed error. An app in another language publishes it anyway.
    let refused = publisher
        .publish("acme", &Touchy { n: 13 })
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), PublishErrorKind::Encode, "{refused}");
    publish_raw(
        &conn,
        "events.acme.test.touchy",
        br#"{"specversion":"1.0","id":"touchy-13","source":"raw","type":"test.touchy","tenantid":"acme","data":{"n":13}}"#,
    )
    .await;
    let bad_call = publisher.publish("acme", &Ping { n: 13 }).await.unwrap();
    let good = publisher.publish("acme", &Touchy { n: 1 }).await.unwrap();
    let good_ping = publisher.publish("acme", &Ping { n: 2 }).await.unwrap();
    recorder
        .wait_for(
            Duration::from_secs(10),
            "the events after the panics",
            |s| {
                s.iter().any(|r| r.event_id == good.id)
                    && s.iter().any(|r| r.event_id == good_ping.id)
            },
        )
        .await;
    let letters = dead_letters(&conn, 2, Duration::from_secs(10)).await;
    let panics: Vec<_> = letters
        .iter()
        .filter(|l| l.kind == DeadLetterKind::Panic)
        .collect();
    assert_eq!(panics.len(), 2, "{letters:?}");
    assert!(
        panics.iter().any(|l| l.error.contains("unlucky number")),
        "{panics:?}"
    );
    assert!(
        panics
            .iter()
            .any(|l| l.stream_sequence == bad_call.stream_sequence
                && l.error.contains("before the first await")),
        "{panics:?}"
    );
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_near_max_payload_still_end_in_the_dead_letters() {
    let (_server, conn) = server().await;
    let max_payload = conn.client().server_info().max_payload;
    let worker = Worker::builder(&conn, ())
        .group(Group::new("big").handle_with(
            |_: Ping, _: Context| async move { Err::<(), _>(HandlerError::permanent("refused")) },
            HandlerOptions::default().retry(RetryPolicy::no_retry()),
        ))
        .build()
        .unwrap()
        .spawn();
    // Garbage, and a valid envelope whose handler fails: both bodies leave no room for the
    // dead letter's headers.
    let garbage = vec![b'#'; max_payload - 200];
    let valid = envelope("big-1", r#"{"n":1}"#, max_payload - 400);
    publish_raw(&conn, "events.acme.test.ping", &garbage).await;
    publish_raw(&conn, "events.acme.test.ping", valid.as_bytes()).await;
    let letters = dead_letters(&conn, 2, Duration::from_secs(15)).await;
    assert_eq!(letters.len(), 2, "{letters:?}");
    let decode = letters
        .iter()
        .find(|l| l.kind == DeadLetterKind::Decode)
        .unwrap();
    assert_eq!(decode.body_truncated_from, Some(garbage.len() as u64));
    assert!(garbage.starts_with(&decode.body));
    let handler = letters
        .iter()
        .find(|l| l.kind == DeadLetterKind::Handler)
        .unwrap();
    assert_eq!(handler.body_truncated_from, Some(valid.len() as u64));
    assert!(valid.as_bytes().starts_with(&handler.body));
    eventually(Duration::from_secs(5), "both settled", || async {
        let (pending, ack_pending, _) = consumer_state(&conn, "big").await;
        pending == 0 && ack_pending == 0
    })
    .await;
    worker.shutdown().await;
}
