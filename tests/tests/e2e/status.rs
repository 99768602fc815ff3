//! What the overview shows beyond consumer state: each tenant's backlog per group, the worker
//! processes of each group.

use std::time::Duration;

use conveyor::status::{TenantBacklog, tenant_backlogs};
use conveyor::{Context, Group, HandlerError, Publisher, TenantId, Worker};
use conveyor_tests::{Ping, Pong, Recorder, eventually, server};

fn worker(conn: &conveyor::Connection, recorder: &Recorder) -> conveyor::worker::WorkerHandle {
    let ok = |ctx: &Context<Recorder>| {
        ctx.state()
            .record(ctx.event_id(), ctx.attempt(), ctx.tenant().as_str());
        Ok::<(), HandlerError>(())
    };
    Worker::builder(conn, recorder.clone())
        .group(
            Group::new("pings")
                .handle(move |_: Ping, ctx: Context<Recorder>| async move { ok(&ctx) }),
        )
        .group(
            Group::new("pongs")
                .handle(move |_: Pong, ctx: Context<Recorder>| async move { ok(&ctx) }),
        )
        .build()
        .unwrap()
        .spawn()
}

fn backlog(tenant: &str, group: &str, pending: u64) -> TenantBacklog {
    TenantBacklog {
        tenant: tenant.into(),
        group: group.into(),
        pending: Some(pending),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenants_backlog_is_counted_per_group() {
    let (_server, conn) = server().await;
    let recorder = Recorder::default();
    // The groups' consumers exist; nothing consumes while the events are published.
    let first = worker(&conn, &recorder);
    eventually(Duration::from_secs(10), "the groups' consumers", || async {
        let groups = conveyor::status::backlogs(&conn).await.unwrap();
        groups.len() == 2 && groups.iter().all(|g| g.consumers == 16)
    })
    .await;
    first.shutdown().await;
    let publisher = Publisher::new(&conn);
    for n in 0..3 {
        publisher.publish("acme", &Ping { n }).await.unwrap();
        publisher.publish("globex", &Ping { n }).await.unwrap();
    }
    for n in 0..2 {
        publisher.publish("acme", &Pong { n }).await.unwrap();
    }
    publisher.publish("globex", &Ping { n: 3 }).await.unwrap();
    let tenants: Vec<TenantId> = ["acme", "globex", "initech"]
        .into_iter()
        .map(|t| TenantId::parse(t).unwrap())
        .collect();
    assert_eq!(
        tenant_backlogs(&conn, &tenants).await.unwrap(),
        [
            backlog("acme", "pings", 3),
            backlog("acme", "pongs", 2),
            backlog("globex", "pings", 4),
        ]
    );
    // Only the tenants asked for are counted.
    assert_eq!(
        tenant_backlogs(&conn, &tenants[1..2]).await.unwrap(),
        [backlog("globex", "pings", 4)]
    );
    // Once handled, nothing is left; the counting consumers are gone.
    let running = worker(&conn, &recorder);
    recorder
        .wait_for(Duration::from_secs(30), "every event", |s| s.len() == 9)
        .await;
    eventually(Duration::from_secs(10), "no backlog", || async {
        tenant_backlogs(&conn, &tenants).await.unwrap().is_empty()
    })
    .await;
    running.shutdown().await;
    let stream = conn
        .jetstream()
        .get_stream(conveyor::topology::EVENTS_STREAM)
        .await
        .unwrap();
    let mut names = stream.consumer_names();
    let mut durable = 0;
    while let Some(name) = futures::StreamExt::next(&mut names).await {
        let name = name.unwrap();
        assert!(name.contains('~'), "a counting consumer is left: {name}");
        durable += 1;
    }
    assert_eq!(durable, 2 * conveyor::partition::PARTITIONS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_processes_announce_their_groups_and_leave_at_shutdown() {
    let (_server, conn) = server().await;
    let recorder = Recorder::default();
    let (a, b) = (worker(&conn, &recorder), worker(&conn, &recorder));
    eventually(
        Duration::from_secs(15),
        "two bound processes per group",
        || async {
            let o = conveyor::status::overview(&conn).await.unwrap();
            o.groups.len() == 2
                && o.groups
                    .iter()
                    .all(|g| g.processes == Some(2) && g.bound_processes == Some(2))
        },
    )
    .await;
    let processes = conveyor::status::workers(&conn).await.unwrap();
    assert_eq!(processes.len(), 4, "{processes:?}");
    assert!(
        processes
            .iter()
            .all(|p| p.pid == std::process::id() && p.concurrency == 32 && !p.host.is_empty())
    );
    let instances: std::collections::HashSet<_> =
        processes.iter().map(|p| p.instance.as_str()).collect();
    assert_eq!(instances.len(), 2, "one instance per worker: {processes:?}");
    a.shutdown().await;
    let left = conveyor::status::workers(&conn).await.unwrap();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.iter().all(|p| instances.contains(p.instance.as_str())));
    b.shutdown().await;
    assert_eq!(conveyor::status::workers(&conn).await.unwrap(), []);
    // The backlog counts need no process: the groups' consumers stay.
    assert_eq!(
        conveyor::status::backlogs(&conn).await.unwrap()[0].processes,
        None
    );
}
