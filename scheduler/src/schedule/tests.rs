//! Ticks, zones, catch-up and overlap of schedules.

use chrono::{DateTime, Utc};

use super::*;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn ticks(expr: &str, tz: &str, from: &str, n: usize) -> Vec<String> {
    let s = Schedule::new("s", expr, "daily.report")
        .timezone(tz)
        .tenants(["acme"])
        .compile()
        .unwrap();
    let mut out = Vec::new();
    let mut cursor = at(from);
    for _ in 0..n {
        cursor = s.next_after(cursor).unwrap();
        out.push(cursor.to_rfc3339());
    }
    out
}

#[test]
fn five_and_six_field_expressions() {
    assert_eq!(normalize_cron("0 9 * * *").unwrap(), "0 0 9 * * *");
    assert_eq!(normalize_cron("*/15 * * * *").unwrap(), "0 */15 * * * *");
    assert_eq!(normalize_cron("* * * * * *").unwrap(), "* * * * * *");
    assert_eq!(normalize_cron("0 2 * * 0").unwrap(), "0 0 2 * * SUN");
    assert_eq!(normalize_cron("0 9 * * 1-5").unwrap(), "0 0 9 * * MON-FRI");
    assert_eq!(
        normalize_cron("0 9 * * 5-7").unwrap(),
        "0 0 9 * * SUN,FRI-SAT"
    );
    assert!(normalize_cron("0 9 * *").is_err());
}

#[test]
fn weekly_cleanup_sunday_0200_in_amsterdam() {
    // 2026-11-22 is a Sunday; 02:00 CET = 01:00 UTC.
    assert_eq!(
        ticks("0 2 * * 0", "Europe/Amsterdam", "2026-11-20T00:00:00Z", 2),
        vec!["2026-11-22T01:00:00+00:00", "2026-11-29T01:00:00+00:00"]
    );
}

#[test]
fn the_same_wall_time_in_two_zones() {
    assert_eq!(
        ticks("0 9 * * *", "Europe/Amsterdam", "2026-11-22T00:00:00Z", 1),
        vec!["2026-11-22T08:00:00+00:00"]
    );
    assert_eq!(
        ticks("0 9 * * *", "America/New_York", "2026-11-22T00:00:00Z", 1),
        vec!["2026-11-22T14:00:00+00:00"]
    );
    assert_eq!(
        ticks("0 9 * * *", "Asia/Kolkata", "2026-11-22T00:00:00Z", 1),
        vec!["2026-11-22T03:30:00+00:00"]
    );
}

#[test]
fn spring_forward_skips_the_missing_time_that_day() {
    // Amsterdam, 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist.
    assert_eq!(
        ticks("30 2 * * *", "Europe/Amsterdam", "2026-03-28T00:00:00Z", 3),
        vec![
            "2026-03-28T01:30:00+00:00",
            "2026-03-30T00:30:00+00:00",
            "2026-03-31T00:30:00+00:00"
        ]
    );
    // Hourly: the missing hour is simply not there; nothing fires twice.
    assert_eq!(
        ticks("0 * * * *", "Europe/Amsterdam", "2026-03-28T23:30:00Z", 3),
        vec![
            "2026-03-29T00:00:00+00:00",
            "2026-03-29T01:00:00+00:00",
            "2026-03-29T02:00:00+00:00"
        ]
    );
}

#[test]
fn fall_back_fires_a_fixed_time_once_and_every_real_hour_for_hourly() {
    // Amsterdam, 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    assert_eq!(
        ticks("30 2 * * *", "Europe/Amsterdam", "2026-10-24T00:00:00Z", 3),
        vec![
            "2026-10-24T00:30:00+00:00",
            "2026-10-25T00:30:00+00:00",
            "2026-10-26T01:30:00+00:00"
        ]
    );
    assert_eq!(
        ticks("0 * * * *", "Europe/Amsterdam", "2026-10-24T23:30:00Z", 4),
        vec![
            "2026-10-25T00:00:00+00:00",
            "2026-10-25T01:00:00+00:00",
            "2026-10-25T02:00:00+00:00",
            "2026-10-25T03:00:00+00:00"
        ]
    );
}

#[test]
fn missed_ticks_are_bounded() {
    let s = Schedule::new("s", "* * * * * *", "health.check")
        .tenants(["acme"])
        .compile()
        .unwrap();
    let (t, dropped) = s.ticks_between(at("2026-11-22T09:00:00Z"), at("2026-11-22T09:00:10Z"), 4);
    assert_eq!(t.len(), 4);
    assert_eq!(dropped, 6);
    assert_eq!(t[3], at("2026-11-22T09:00:10Z"));
}

#[test]
fn invalid_schedules_name_the_schedule_and_the_problem() {
    use ScheduleErrorKind as K;
    let base = || Schedule::new("nightly", "0 2 * * *", "weekly.cleanup").tenants(["acme"]);
    let cases = [
        (base().timezone("Mars/Olympus"), K::UnknownTimeZone),
        (
            Schedule {
                cron: "61 2 * * *".into(),
                ..base()
            },
            K::InvalidCron,
        ),
        (
            Schedule {
                cron: "0 2 * *".into(),
                ..base()
            },
            K::InvalidCron,
        ),
        (
            Schedule {
                cron: "0 2 * * 9".into(),
                ..base()
            },
            K::InvalidCron,
        ),
        (
            Schedule {
                event_type: "Weekly Cleanup".into(),
                ..base()
            },
            K::InvalidEventType,
        ),
        (base().tenants(["a.b"]), K::InvalidTenants),
        (base().tenants(Vec::<String>::new()), K::InvalidTenants),
        (base().tenant_registry(), K::InvalidTenants),
        (
            Schedule {
                name: "bad name".into(),
                ..base()
            },
            K::InvalidName,
        ),
        (
            base().catch_up(CatchUp::All).catch_up_max(0),
            K::InvalidPolicy,
        ),
    ];
    for (s, kind) in cases {
        let e = s.compile().unwrap_err();
        assert_eq!(e.kind(), kind, "{e}");
        assert!(
            e.to_string().starts_with(&format!("schedule {:?}", s.name)),
            "{e}"
        );
    }
    let dup = compile_all(&[base(), base()]).unwrap_err();
    assert_eq!(dup.kind(), K::DuplicateName);
}
