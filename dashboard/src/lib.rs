//! The Conveyor operator dashboard: every group, tenant, run, dead letter, schedule and event
//! type of a deployment, in pages rendered on the server and a JSON API under them.
//!
//! `conveyor dashboard` serves it (and `python3 dev.py run` starts it). The pages and the API
//! call the same library functions as the `conveyor` command line (`conveyor::status`,
//! `conveyor::dlq`, `conveyor::history`, `conveyor::pause`, `conveyor::control`,
//! `conveyor_scheduler`), so the three never disagree. Every asset is part of the binary; the
//! pages work offline and without JavaScript.
//!
//! Security: it binds `127.0.0.1` by default and refuses another address without a token;
//! mutating actions are POSTs refused from other origins; `read_only` refuses them all; no
//! credential is ever rendered, and every value shown is escaped (event data is tenant input).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use conveyor_dashboard::{Dashboard, DashboardConfig};
//!
//! let conn = conveyor::Connection::connect("nats://127.0.0.1:4222").await?;
//! let dashboard = Dashboard::start(&conn, DashboardConfig::default()).await?;
//! println!("http://{}/", dashboard.local_addr());
//! # Ok(()) }
//! ```

mod activity;
mod api;
mod charts;
mod dead_letters;
mod events;
mod form;
mod layout;
mod overview;
mod runs;
mod schedules;
mod security;
mod server;
mod tenants;

pub use server::{Dashboard, DashboardConfig, DashboardError, DashboardErrorKind};
