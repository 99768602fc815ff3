//! The catalog's contract: naming rules, valid draft 2020-12 schemas, examples that validate
//! and round-trip, committed files that match the code, and a compatibility check that catches
//! breaking changes.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use conveyor_schemas::compat;
use conveyor_schemas::export::{self, ExportError};
use conveyor_schemas::{Entry, catalog, validate};
use serde_json::{Value, json};

#[test]
fn the_catalog_has_at_least_40_unique_well_named_types() {
    let all = catalog();
    assert!(all.len() >= 40, "only {} event types", all.len());
    let mut seen = HashSet::new();
    for e in all {
        assert!(
            seen.insert(e.event_type()),
            "duplicate type {}",
            e.event_type()
        );
        conveyor::validate_event_type(e.event_type())
            .unwrap_or_else(|err| panic!("{}: {err}", e.event_type()));
        assert!(!e.domain().is_empty());
        assert!(
            !e.description().is_empty(),
            "{} has no description",
            e.event_type()
        );
    }
    let domains: HashSet<&str> = all.iter().map(Entry::domain).collect();
    for d in [
        "commerce",
        "reviews",
        "creators",
        "attribution",
        "video",
        "dam",
        "fraud",
        "notifications",
        "messaging",
        "analysis",
        "scheduled",
    ] {
        assert!(domains.contains(d), "no {d} events");
    }
}

#[test]
fn every_exported_schema_is_valid_draft_2020_12() {
    for (path, text) in export::generate() {
        if path == "catalog.json" {
            continue;
        }
        let schema: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{path}"
        );
        jsonschema::draft202012::meta::validate(&schema)
            .unwrap_or_else(|e| panic!("{path} is not a valid draft 2020-12 schema: {e}"));
        jsonschema::draft202012::new(&schema)
            .unwrap_or_else(|e| panic!("{path} does not compile: {e}"));
    }
}

#[test]
fn every_example_validates_and_round_trips_through_its_rust_type() {
    for e in catalog() {
        let example = e.example();
        validate(e.event_type(), &example)
            .unwrap_or_else(|err| panic!("{} example: {err}", e.event_type()));
        let back = e
            .round_trip(&example)
            .unwrap_or_else(|err| panic!("{}: {err}", e.event_type()));
        assert_eq!(back, example, "{} does not round-trip", e.event_type());
    }
}

#[test]
fn every_envelope_example_validates_against_its_envelope_schema() {
    for e in catalog() {
        let schema = export::envelope_schema(e);
        let validator = jsonschema::draft202012::new(&schema).unwrap();
        for example in schema["examples"].as_array().unwrap() {
            let errors: Vec<String> = validator
                .iter_errors(example)
                .map(|e| e.to_string())
                .collect();
            assert!(errors.is_empty(), "{}: {errors:?}", e.event_type());
        }
        let mut wrong_tenant = schema["examples"][0].clone();
        wrong_tenant["tenantid"] = json!("a.b");
        assert!(!validator.is_valid(&wrong_tenant), "{}", e.event_type());
        let mut wrong_type = schema["examples"][0].clone();
        wrong_type["type"] = json!("other.type");
        assert!(!validator.is_valid(&wrong_type), "{}", e.event_type());
        for bad_id in [json!(""), json!("a\u{7}b"), json!("i".repeat(257))] {
            let mut wrong_id = schema["examples"][0].clone();
            wrong_id["id"] = bad_id;
            assert!(!validator.is_valid(&wrong_id), "{}", e.event_type());
        }
    }
}

#[test]
fn every_envelope_example_has_its_own_id() {
    let mut seen = std::collections::BTreeMap::new();
    for e in catalog() {
        let schema = export::envelope_schema(e);
        for example in schema["examples"].as_array().unwrap() {
            let id = example["id"].as_str().unwrap().to_owned();
            if let Some(other) = seen.insert(id.clone(), e.event_type()) {
                panic!(
                    "{} and {other} share the example id {id}: publishing both stores one",
                    e.event_type()
                );
            }
        }
    }
}

#[test]
fn an_envelope_from_the_real_publisher_encoding_validates() {
    // The framework's own decoder and the envelope schema agree on one real message.
    let e = conveyor_schemas::find("order.created").unwrap();
    let schema = export::envelope_schema(e);
    let body = json!({
        "specversion": "1.0", "id": "x-1", "source": "shop", "type": "order.created",
        "time": "2026-11-22T09:00:00.000000Z", "datacontenttype": "application/json",
        "tenantid": "acme", "data": e.example(),
    });
    assert!(
        jsonschema::draft202012::new(&schema)
            .unwrap()
            .is_valid(&body)
    );
    let decoded = conveyor::Envelope::<conveyor_schemas::commerce::OrderCreated>::decode(
        &serde_json::to_vec(&body).unwrap(),
    )
    .unwrap();
    assert_eq!(decoded.tenant.as_str(), "acme");
}

#[test]
fn invalid_payloads_fail_schema_and_decoding_naming_the_field() {
    let e = conveyor_schemas::find("order.created").unwrap();
    let cases = [
        ("/total/currency", "eur"),
        ("/lines/0/quantity", "0"),
        ("/order_id", "\"\""),
    ];
    for (pointer, bad) in cases {
        let mut data = e.example();
        *data.pointer_mut(pointer).unwrap() =
            serde_json::from_str(bad).unwrap_or_else(|_| json!(bad));
        let err = validate("order.created", &data).unwrap_err().to_string();
        assert!(err.contains(pointer), "schema error names {pointer}: {err}");
        let err = e.round_trip(&data).unwrap_err();
        let field = pointer
            .trim_start_matches('/')
            .replace("/0/", "[0].")
            .replace('/', ".");
        assert!(err.contains(&field), "decode error names {field}: {err}");
    }
    let fraud = conveyor_schemas::find("fraud.detection.created").unwrap();
    let mut data = fraud.example();
    data["decision"] = json!("MAYBE");
    assert!(validate("fraud.detection.created", &data).is_err());
    assert!(
        fraud
            .round_trip(&data)
            .unwrap_err()
            .contains("data.decision")
    );
    assert!(matches!(
        validate("no.such.type", &json!({})),
        Err(conveyor_schemas::ValidateError::UnknownType(_))
    ));
}

#[test]
fn committed_schema_files_match_the_code() {
    let report = export::check_dir(&export::default_dir()).unwrap();
    assert!(
        report.incompatibilities.is_empty(),
        "the code breaks published event types; put breaking changes in a new type (e.g. order.created.v2):\n{report}"
    );
    assert!(
        report.is_clean(),
        "schemas/json differs from the code; run `python3 dev.py schemas`:\n{report}"
    );
}

#[test]
fn committed_typescript_declarations_match_the_code() {
    let dir = conveyor_schemas::typescript::default_dir();
    let report = conveyor_schemas::typescript::check_dir(&dir).unwrap();
    assert!(
        report.is_clean(),
        "schemas/ts differs from the code; run `python3 dev.py schemas`:\n{report}"
    );
    let events = std::fs::read_to_string(dir.join("events.d.ts")).unwrap();
    for entry in conveyor_schemas::catalog() {
        let line = format!(
            "  \"{}\": {};",
            entry.event_type(),
            conveyor_schemas::typescript::interface_name(entry.event_type())
        );
        assert!(events.contains(&line), "no {line:?} in events.d.ts");
    }
}

// ---- compatibility, against temporary copies of the committed files ----

/// A temporary schema directory holding what the code generates, with `edit` applied to the
/// data schema of `event_type`: the edited copy plays the published baseline.
fn baseline_with(event_type: &str, edit: impl FnOnce(&mut Value)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    export::write_dir(dir.path(), false).unwrap();
    let path = dir.path().join(format!("{event_type}.schema.json"));
    let mut schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut schema);
    std::fs::write(&path, serde_json::to_string_pretty(&schema).unwrap()).unwrap();
    dir
}

fn breaking(dir: &Path) -> Vec<String> {
    export::check_dir(dir)
        .unwrap()
        .incompatibilities
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn a_removed_or_renamed_field_is_breaking() {
    // The baseline has a field the code no longer has.
    let dir = baseline_with("order.fulfilled", |s| {
        s["properties"]["carrier"] = json!({"type": "string"});
    });
    let found = breaking(dir.path());
    assert_eq!(
        found,
        vec!["order.fulfilled data.carrier: field removed or renamed"]
    );
}

#[test]
fn a_new_required_field_is_breaking() {
    // The code requires `reason`, the baseline did not have it.
    let dir = baseline_with("order.cancelled", |s| {
        s["properties"].as_object_mut().unwrap().remove("reason");
        let req = s["required"].as_array_mut().unwrap();
        req.retain(|r| r != "reason");
    });
    assert_eq!(
        breaking(dir.path()),
        vec!["order.cancelled data.reason: new required field"]
    );
    // An optional field becoming required is breaking too.
    let dir = baseline_with("order.cancelled", |s| {
        s["required"]
            .as_array_mut()
            .unwrap()
            .retain(|r| r != "reason");
    });
    assert_eq!(
        breaking(dir.path()),
        vec!["order.cancelled data.reason: optional field became required"]
    );
}

#[test]
fn a_narrowed_type_is_breaking() {
    // The baseline accepted any number of followers; the code accepts only integers.
    let dir = baseline_with("creator.applied", |s| {
        s["properties"]["followers"] = json!({"type": "number"});
    });
    let found = breaking(dir.path());
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("creator.applied data.followers: type narrowed"),
        "{found:?}"
    );
    // No longer accepting null.
    let dir = baseline_with("order.fulfilled", |s| {
        s["properties"]["fulfilled_at"]["type"] = json!(["string", "null"]);
    });
    assert_eq!(
        breaking(dir.path()),
        vec!["order.fulfilled data.fulfilled_at: no longer accepts null"]
    );
}

#[test]
fn a_removed_enum_value_is_breaking_even_when_nested() {
    let dir = baseline_with("order.cancelled", |s| {
        let reason = s["$defs"]["CancellationReason"].as_object_mut().unwrap();
        let alts = reason.get_mut("oneOf").unwrap().as_array_mut().unwrap();
        alts.push(json!({"const": "changed_mind", "type": "string"}));
    });
    assert_eq!(
        breaking(dir.path()),
        vec![r#"order.cancelled data.reason: enum value "changed_mind" removed"#]
    );
}

#[test]
fn a_removed_event_type_is_breaking() {
    let dir = baseline_with("order.created", |_| {});
    let extra = dir.path().join("order.created.v0.schema.json");
    std::fs::copy(dir.path().join("order.created.schema.json"), &extra).unwrap();
    assert_eq!(
        breaking(dir.path()),
        vec!["order.created.v0 data: event type removed"]
    );
}

#[test]
fn additive_changes_pass() {
    // The code added an optional field and an enum value the baseline lacks.
    let dir = baseline_with("order.fulfilled", |s| {
        s["properties"]
            .as_object_mut()
            .unwrap()
            .remove("tracking_number");
    });
    assert!(breaking(dir.path()).is_empty());
    let dir = baseline_with("fraud.detection.created", |s| {
        let d = s["$defs"]["Decision"].as_object_mut().unwrap();
        let alts = d.get_mut("oneOf").unwrap().as_array_mut().unwrap();
        alts.retain(|a| a["const"] != "REVIEW");
    });
    assert!(
        breaking(dir.path()).is_empty(),
        "{:?}",
        breaking(dir.path())
    );
    // Widening integer to number is fine in the other direction.
    let dir = baseline_with("creator.approved", |s| {
        s["properties"]["commission_bps"]["minimum"] = json!(5);
    });
    assert!(
        breaking(dir.path()).is_empty(),
        "{:?}",
        breaking(dir.path())
    );
}

#[test]
fn export_refuses_to_overwrite_with_breaking_changes_and_reports_drift() {
    let dir = baseline_with("order.fulfilled", |s| {
        s["properties"]["carrier"] = json!({"type": "string"});
    });
    let before = std::fs::read_to_string(dir.path().join("order.fulfilled.schema.json")).unwrap();
    match export::write_dir(dir.path(), false) {
        Err(ExportError::Breaking(list)) => assert_eq!(list.len(), 1),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let after = std::fs::read_to_string(dir.path().join("order.fulfilled.schema.json")).unwrap();
    assert_eq!(before, after, "nothing written");
    let report = export::check_dir(dir.path()).unwrap();
    assert_eq!(report.changed, vec!["order.fulfilled.schema.json"]);
    export::write_dir(dir.path(), true).unwrap();
    assert!(export::check_dir(dir.path()).unwrap().is_clean());
}

#[test]
fn compat_check_compares_catalog_maps_directly() {
    let mut old = BTreeMap::new();
    old.insert(
        "a.b".to_owned(),
        json!({"type": "object", "properties": {"x": {"type": "string", "enum": ["p", "q"]}}}),
    );
    let mut new = BTreeMap::new();
    new.insert(
        "a.b".to_owned(),
        json!({"type": "object", "properties": {"x": {"type": "string", "enum": ["p"]}}}),
    );
    let found = compat::check(&old, &new);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, "data.x");
    assert!(found[0].message.contains("\"q\""));
}
