//! The dashboard in a real headless Chromium (through chromedriver) against a real nats-server
//! with real events: every page opened and saved as a screenshot, and each action done by
//! clicking: replay a dead letter and see it handled, trigger a schedule and see its event,
//! cancel a running job, send a test event from the generated form, and a `<script>` payload
//! shown as text.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod world;

use fantoccini::{Client, Locator};

use world::World;

/// Saves a screenshot of the current page as `<name>.png` in `CONVEYOR_SCREENSHOT_DIR`
/// (`python3 dev.py screenshots` sets it to `docs/dashboard`), else under the target dir.
async fn screenshot(client: &Client, name: &str) {
    let dir = std::env::var_os("CONVEYOR_SCREENSHOT_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots")
        });
    std::fs::create_dir_all(&dir).unwrap();
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

async fn text(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The notice of the page an action led to (waiting for that page to load).
async fn notice(client: &Client) -> String {
    wait_for(client, "p.notice").await
}

/// The text of `css` once the current page has it.
async fn wait_for(client: &Client, css: &str) -> String {
    client
        .wait()
        .at_most(std::time::Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .text()
        .await
        .unwrap()
}

/// How many `<script>` elements the page has: the dashboard renders none, so any would be
/// tenant input that escaped.
async fn scripts(client: &Client) -> u64 {
    client
        .execute("return document.querySelectorAll('script').length", vec![])
        .await
        .unwrap()
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sees_and_acts_on_every_page() {
    let w = World::start().await;
    let c = &w.browser;

    // Overview: the groups with their dead letters.
    c.goto(&w.url("/")).await.unwrap();
    let groups = text(c, "main table").await;
    assert!(
        groups.contains("orders") && groups.contains("slow"),
        "{groups}"
    );
    // The worker process of each group, bound to its consumers.
    let processes = text(c, "main table:nth-of-type(2)").await;
    let pid = std::process::id().to_string();
    assert!(
        processes
            .lines()
            .filter(|l| l.contains(&pid) && l.contains("bound"))
            .count()
            >= 2,
        "{processes}"
    );
    screenshot(c, "overview").await;

    // Tenants: each with its dead letters; search in the URL.
    c.goto(&w.url("/tenants")).await.unwrap();
    let tenants = text(c, "main table").await;
    assert!(
        tenants.contains("acme") && tenants.contains("globex"),
        "{tenants}"
    );
    screenshot(c, "tenants").await;
    c.goto(&w.url("/tenants?tenant=glob")).await.unwrap();
    assert!(!text(c, "main table").await.contains("acme"));
    // globex's review is running (a handler that waits): counted from the run history.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        c.goto(&w.url("/tenants?tenant=globex")).await.unwrap();
        let running = text(c, "a[href='/runs?tenant=globex&state=running']").await;
        if running.trim() == "1" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "globex's running job is not counted: {running:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }

    // Dead letters: grouped, with the <script> payload shown as text.
    c.goto(&w.url("/dead-letters")).await.unwrap();
    let page = text(c, "main").await;
    assert!(page.contains("2 dead letters"), "{page}");
    assert!(
        page.contains("<script>alert(1)</script>"),
        "the payload is not shown as text: {page}"
    );
    assert_eq!(scripts(c).await, 0, "a <script> element reached the page");
    screenshot(c, "dead-letters").await;
    c.goto(&w.url(&format!("/dead-letters/{}", w.script_letter)))
        .await
        .unwrap();
    assert!(text(c, "pre").await.contains("<script>alert(1)</script>"));
    assert_eq!(scripts(c).await, 0);
    screenshot(c, "dead-letter").await;

    // Replay a dead letter, once its handler works again, and see it handled.
    w.heal();
    c.goto(&w.url(&format!("/dead-letters/{}", w.bad_letter)))
        .await
        .unwrap();
    c.find(Locator::Css("form[action$='/replay'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(notice(c).await.contains("replayed"), "{}", notice(c).await);
    w.wait_for_state("order-bad-1", "orders", "succeeded").await;
    c.goto(&w.url("/runs/order-bad-1")).await.unwrap();
    assert!(text(c, "main").await.contains("succeeded"));

    // The overview counts what the history recorded: handled per minute and run times.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        c.goto(&w.url("/?group=orders")).await.unwrap();
        if text(c, "main table").await.contains(" ms") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no run times on the overview"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    c.goto(&w.url("/")).await.unwrap();
    screenshot(c, "overview").await;

    // Runs: the list, and a running job's page with its progress; cancel it.
    c.goto(&w.url("/runs?group=slow")).await.unwrap();
    assert!(text(c, "main table").await.contains("review-1"));
    c.goto(&w.url("/runs")).await.unwrap();
    screenshot(c, "runs").await;
    c.goto(&w.url("/runs/review-1")).await.unwrap();
    let run = text(c, "main").await;
    assert!(
        run.contains("running") && run.contains("reading the review"),
        "{run}"
    );
    screenshot(c, "run").await;
    c.find(Locator::Css("form[action$='/cancel'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(notice(c).await.contains("cancelled"));
    w.wait_for_state("review-1", "slow", "cancelled").await;

    // Schedules: trigger one now for a tenant and see its event.
    c.goto(&w.url("/schedules")).await.unwrap();
    assert!(text(c, "main table").await.contains("nightly-health"));
    screenshot(c, "schedules").await;
    let select = c
        .find(Locator::Css("form[action$='/trigger'] select"))
        .await
        .unwrap();
    select.select_by_value("globex").await.unwrap();
    c.find(Locator::Css("form[action$='/trigger'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(
        notice(c)
            .await
            .contains("triggered nightly-health for globex"),
        "{}",
        notice(c).await
    );
    let tick = w.find_event(|e| e["type"] == "health.check").await;
    assert_eq!(tick["tenantid"], "globex");
    assert!(
        tick["id"]
            .as_str()
            .unwrap()
            .starts_with("manual:nightly-health:globex:")
    );

    // Events: the catalog, a type's page, and a test event sent from the generated form.
    c.goto(&w.url("/events")).await.unwrap();
    assert!(text(c, "main table").await.contains("order.created"));
    screenshot(c, "events").await;
    c.goto(&w.url("/events/order.created")).await.unwrap();
    screenshot(c, "event-type").await;
    // An invalid value is refused with its path, nothing is published.
    c.find(Locator::Css("input[name='tenant']"))
        .await
        .unwrap()
        .send_keys("initech")
        .await
        .unwrap();
    let currency = c
        .find(Locator::Css("input[name='f.total.currency']"))
        .await
        .unwrap();
    currency.clear().await.unwrap();
    currency.send_keys("euro").await.unwrap();
    c.find(Locator::Css("form.stack button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let alert = wait_for(c, "p.error").await;
    assert!(alert.contains("/total/currency"), "{alert}");
    let currency = c
        .find(Locator::Css("input[name='f.total.currency']"))
        .await
        .unwrap();
    currency.clear().await.unwrap();
    currency.send_keys("EUR").await.unwrap();
    c.find(Locator::Css("form.stack button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(notice(c).await.contains("published"), "{}", notice(c).await);
    let sent = w
        .find_event(|e| e["type"] == "order.created" && e["tenantid"] == "initech")
        .await;
    assert_eq!(sent["source"], "conveyor-dashboard");
    assert_eq!(sent["data"]["total"]["currency"], "EUR");

    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_dashboard_shows_no_actions() {
    let w = World::start_with(|c| c.read_only = true).await;
    let c = &w.browser;
    c.goto(&w.url("/dead-letters")).await.unwrap();
    assert!(
        c.find(Locator::Css("form[method='post']")).await.is_err(),
        "a read-only page offers an action"
    );
    c.goto(&w.url("/events/order.created")).await.unwrap();
    assert!(text(c, "main").await.contains("read-only"));
    w.stop().await;
}
