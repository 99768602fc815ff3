//! End-to-end tests of Conveyor against real nats-server processes, one server per test.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod bad_input;
mod batches;
mod catalog_examples;
mod cluster;
mod concurrency_limits;
mod dead_letters;
mod delayed;
mod dev_system;
mod fairness;
mod history;
mod layout;
mod nats_config;
mod observability;
mod pause;
mod permissions;
mod publish;
mod rate_limits;
mod replay;
mod resilience;
mod retention;
mod rolling_deploy;
mod scheduler;
mod scheduler_isolation;
mod settling;
mod status;
mod worker;
