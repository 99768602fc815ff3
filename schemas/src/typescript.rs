//! TypeScript declarations of the catalog, generated from its JSON Schemas, for apps that
//! publish from TypeScript (through the HTTP gateway or nats.js).
//!
//! `schemas/ts/events.d.ts` holds one interface per event type (`order.created` →
//! `OrderCreated`), the shared definitions, an `EventMap` from type name to data, and the
//! CloudEvents envelope; `schemas/ts/gateway.d.ts` the request and answer bodies of the gateway.
//! Write them with `python3 dev.py schemas`; [`check_dir`] finds drift like the JSON files'.
//!
//! Only the schema keywords the catalog's schemas use are translated (`type`, `properties`,
//! `required`, `items`, `additionalProperties`, `const`, `oneOf`, `$ref`); constraints that
//! TypeScript cannot express (`pattern`, `minLength`, `format`, `minimum`) become doc comments,
//! and the gateway checks them. No crate translates JSON Schema into TypeScript declarations,
//! hence this module.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::catalog::catalog;
use crate::export::{ExportError, Report};

/// The committed declaration directory of this crate.
pub fn default_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ts")
}

/// `order.created` → `OrderCreated`, `video.ai.generated` → `VideoAiGenerated`.
pub fn interface_name(event_type: &str) -> String {
    event_type
        .split(['.', '_', '-'])
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(c) => c.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

const HEADER: &str = "// Generated from the JSON Schemas of the Conveyor event catalog by `python3 dev.py schemas`.\n// Do not edit: change the Rust types in schemas/src and regenerate.\n";

/// Every declaration file, by path relative to the declaration directory.
pub fn generate() -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    files.insert("events.d.ts".to_owned(), events());
    files.insert("gateway.d.ts".to_owned(), GATEWAY.to_owned());
    files
}

fn events() -> String {
    let mut out = String::from(HEADER);
    // Definitions shared by several types (Money, ...) are declared once; two different
    // definitions of one name are told apart by their event type's name.
    let mut defs: BTreeMap<String, Value> = BTreeMap::new();
    let mut renames: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    for entry in catalog() {
        let schema = entry.schema();
        let mut local = BTreeMap::new();
        if let Some(d) = schema.get("$defs").and_then(Value::as_object) {
            for (name, def) in d {
                let chosen = match defs.get(name) {
                    Some(existing) if existing != def => {
                        format!("{}{name}", interface_name(entry.event_type()))
                    }
                    _ => name.clone(),
                };
                defs.entry(chosen.clone()).or_insert_with(|| def.clone());
                local.insert(name.clone(), chosen);
            }
        }
        renames.push((entry.event_type().to_owned(), local));
    }
    let mut emitted = std::collections::BTreeSet::new();
    for (entry, (_, local)) in catalog().iter().zip(&renames) {
        let schema = entry.schema();
        if let Some(d) = schema.get("$defs").and_then(Value::as_object) {
            for (name, def) in d {
                let chosen = &local[name];
                if emitted.insert(chosen.clone()) {
                    declare(&mut out, chosen, def, local);
                }
            }
        }
    }
    for (entry, (_, local)) in catalog().iter().zip(&renames) {
        let mut schema = entry.schema();
        if let Some(o) = schema.as_object_mut() {
            o.insert(
                "description".into(),
                Value::String(format!(
                    "`{}` ({}): {}",
                    entry.event_type(),
                    entry.domain(),
                    entry.description()
                )),
            );
        }
        declare(
            &mut out,
            &interface_name(entry.event_type()),
            &schema,
            local,
        );
    }
    out.push_str(
        "/** The data of each event type, by type name. */\nexport interface EventMap {\n",
    );
    for entry in catalog() {
        let _ = writeln!(
            out,
            "  \"{}\": {};",
            entry.event_type(),
            interface_name(entry.event_type())
        );
    }
    out.push_str(
        "}\n\n/** Every event type of the catalog. */\nexport type EventType = keyof EventMap;\n\n",
    );
    out.push_str(ENVELOPE);
    out
}

fn doc(out: &mut String, indent: &str, schema: &Value) {
    let mut lines: Vec<String> = schema
        .get("description")
        .and_then(Value::as_str)
        .map(|d| d.lines().map(str::to_owned).collect())
        .unwrap_or_default();
    let notes: Vec<String> = [
        "format",
        "pattern",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
    ]
    .iter()
    .filter_map(|k| schema.get(*k).map(|v| format!("{k}: {v}")))
    .collect();
    if !notes.is_empty() {
        lines.push(format!("Checked by the gateway: {}.", notes.join(", ")));
    }
    if lines.is_empty() {
        return;
    }
    let _ = writeln!(out, "{indent}/**");
    for line in lines {
        // `*/` inside a description would end the comment.
        let _ = writeln!(out, "{indent} * {}", line.replace("*/", "*\\/"));
    }
    let _ = writeln!(out, "{indent} */");
}

fn declare(out: &mut String, name: &str, schema: &Value, defs: &BTreeMap<String, String>) {
    doc(out, "", schema);
    if schema.get("properties").is_some() {
        let _ = writeln!(
            out,
            "export interface {name} {}\n",
            object(schema, defs, "")
        );
    } else {
        let _ = writeln!(out, "export type {name} = {};\n", ty(schema, defs, ""));
    }
}

fn object(schema: &Value, defs: &BTreeMap<String, String>, indent: &str) -> String {
    let empty = Map::new();
    let properties = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let inner = format!("{indent}  ");
    let mut out = String::from("{\n");
    for (key, property) in properties {
        doc(&mut out, &inner, property);
        let optional = if required.contains(&key.as_str()) {
            ""
        } else {
            "?"
        };
        let _ = writeln!(
            out,
            "{inner}{}{optional}: {};",
            property_name(key),
            ty(property, defs, &inner)
        );
    }
    match schema.get("additionalProperties") {
        Some(Value::Bool(false)) => {}
        Some(Value::Object(_)) | Some(Value::Bool(true)) | None if properties.is_empty() => {
            let value = match schema.get("additionalProperties") {
                Some(v @ Value::Object(_)) => ty(v, defs, &inner),
                _ => "unknown".to_owned(),
            };
            let _ = writeln!(out, "{inner}[key: string]: {value};");
        }
        _ => {}
    }
    out.push_str(indent);
    out.push('}');
    out
}

fn property_name(key: &str) -> String {
    let plain = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        key.to_owned()
    } else {
        Value::String(key.to_owned()).to_string()
    }
}

fn ty(schema: &Value, defs: &BTreeMap<String, String>, indent: &str) -> String {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        return defs.get(name).cloned().unwrap_or_else(|| name.to_owned());
    }
    if let Some(c) = schema.get("const") {
        return c.to_string();
    }
    if let Some(options) = schema
        .get("oneOf")
        .or_else(|| schema.get("anyOf"))
        .and_then(Value::as_array)
    {
        let parts: Vec<String> = options.iter().map(|o| ty(o, defs, indent)).collect();
        return parts.join(" | ");
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let parts: Vec<String> = values.iter().map(Value::to_string).collect();
        return parts.join(" | ");
    }
    match schema.get("type") {
        Some(Value::String(t)) => named(t, schema, defs, indent),
        Some(Value::Array(types)) => {
            let parts: Vec<String> = types
                .iter()
                .filter_map(Value::as_str)
                .map(|t| named(t, schema, defs, indent))
                .collect();
            parts.join(" | ")
        }
        _ => "unknown".to_owned(),
    }
}

fn named(t: &str, schema: &Value, defs: &BTreeMap<String, String>, indent: &str) -> String {
    match t {
        "string" => "string".into(),
        "integer" | "number" => "number".into(),
        "boolean" => "boolean".into(),
        "null" => "null".into(),
        "array" => match schema.get("items") {
            Some(items) => {
                let item = ty(items, defs, indent);
                if item.contains(' ') {
                    format!("({item})[]")
                } else {
                    format!("{item}[]")
                }
            }
            None => "unknown[]".into(),
        },
        "object" => object(schema, defs, indent),
        _ => "unknown".into(),
    }
}

const ENVELOPE: &str = r#"/**
 * A CloudEvents 1.0 event of type `T` in JSON structured mode, as the gateway takes it
 * (`Content-Type: application/cloudevents+json`, or an array of them as
 * `application/cloudevents-batch+json`) and as it is stored on `events.<tenantid>.<type>`.
 */
export interface CloudEvent<T extends EventType = EventType> {
  specversion: "1.0";
  /** Unique per tenant: a retry with the same id inside the duplicate window is stored once. */
  id: string;
  /** The publishing app. */
  source: string;
  type: T;
  /** When it happened (RFC 3339). */
  time?: string;
  datacontenttype?: "application/json";
  /** The tenant. Through the gateway it may be left out: the API key names it. */
  tenantid?: string;
  /** W3C trace context. */
  traceparent?: string;
  /** Id shared by every event of one causal chain. */
  correlationid?: string;
  /** Id of the event that caused this one. */
  causationid?: string;
  /** Gateway only: deliver this long after it is stored, e.g. "10m", "3d". */
  delay?: string;
  /** Gateway only: deliver at this time (RFC 3339). */
  deliverat?: string;
  data: EventMap[T];
}
"#;

const GATEWAY: &str = r#"// The request and answer bodies of the Conveyor HTTP gateway (POST /v1/events).
// Written by `python3 dev.py schemas`; see README "HTTP gateway".
import type { EventMap, EventType } from "./events";

export type * from "./events";

/** The minimal form (`Content-Type: application/json`) for hand-written calls. */
export interface GatewayEvent<T extends EventType = EventType> {
  type: T;
  data: EventMap[T];
  /** Give one to make retries safe: the same id is stored once. Default: a new id. */
  id?: string;
  source?: string;
  /** RFC 3339. */
  time?: string;
  correlation_id?: string;
  causation_id?: string;
  /** Deliver this long after it is stored, e.g. "10m". */
  delay?: string;
  /** Deliver at this time (RFC 3339). */
  deliver_at?: string;
}

/** What happened to one event. */
export interface GatewayEventResult {
  id: string;
  /**
   * `stored`; `duplicate` (stored by an earlier request with this id); `not_stored`; or
   * `unknown` (the stream's answer was lost: retry with the same id, it is stored once).
   */
  status: "stored" | "duplicate" | "not_stored" | "unknown";
  sequence?: number;
  /** When a delayed event becomes visible (RFC 3339). */
  deliver_at?: string;
  error?: string;
}

/** The body of a `202 Accepted`: every event is stored. */
export interface GatewayAccepted {
  events: GatewayEventResult[];
}

/** The body of every refusal (4xx, 5xx). */
export interface GatewayError {
  error: {
    status: number;
    /**
     * `unauthorized`, `forbidden_tenant`, `forbidden_type`, `invalid_json`, `invalid_request`,
     * `invalid_event`, `unknown_type`, `invalid_data`, `too_deep`, `too_large`,
     * `unsupported_media_type`, `timeout`, `rate_limited`, `unavailable`, ...
     */
    code: string;
    message: string;
    /** JSON Pointer into the request body (in a batch, from the event's index: `/3/data/x`). */
    pointer?: string;
    violations?: { pointer: string; message: string }[];
  };
  /** After publishing began (a partly stored batch, a lost answer): each event's fate. */
  events?: GatewayEventResult[];
}
"#;

/// Reads every `.d.ts` file under `dir` (missing dir: empty).
fn read_dir(dir: &Path) -> Result<BTreeMap<String, String>, ExportError> {
    let mut out = BTreeMap::new();
    if !dir.exists() {
        return Ok(out);
    }
    for entry in std::fs::read_dir(dir).map_err(|e| ExportError::Io(dir.to_path_buf(), e))? {
        let path = entry
            .map_err(|e| ExportError::Io(dir.to_path_buf(), e))?
            .path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if let Some(name) = name.filter(|n| n.ends_with(".d.ts")) {
            let text =
                std::fs::read_to_string(&path).map_err(|e| ExportError::Io(path.clone(), e))?;
            out.insert(name, text);
        }
    }
    Ok(out)
}

/// Compares the generated declarations with the files in `dir`.
pub fn check_dir(dir: &Path) -> Result<Report, ExportError> {
    let committed = read_dir(dir)?;
    let generated = generate();
    let mut report = Report::default();
    for (path, text) in &generated {
        match committed.get(path) {
            None => report.added.push(format!("ts/{path}")),
            Some(old) if old != text => report.changed.push(format!("ts/{path}")),
            Some(_) => {}
        }
    }
    report.removed = committed
        .keys()
        .filter(|p| !generated.contains_key(*p))
        .map(|p| format!("ts/{p}"))
        .collect();
    Ok(report)
}

/// Writes the declarations into `dir`, removing `.d.ts` files no longer generated.
pub fn write_dir(dir: &Path) -> Result<Report, ExportError> {
    let report = check_dir(dir)?;
    std::fs::create_dir_all(dir).map_err(|e| ExportError::Io(dir.to_path_buf(), e))?;
    for (path, text) in generate() {
        let target = dir.join(&path);
        std::fs::write(&target, text).map_err(|e| ExportError::Io(target.clone(), e))?;
    }
    for path in &report.removed {
        let target = dir.join(path.trim_start_matches("ts/"));
        std::fs::remove_file(&target).map_err(|e| ExportError::Io(target.clone(), e))?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_are_pascal_case() {
        assert_eq!(interface_name("order.created"), "OrderCreated");
        assert_eq!(interface_name("video.ai.generated"), "VideoAiGenerated");
        assert_eq!(
            interface_name("dam.gdrive.sync.requested"),
            "DamGdriveSyncRequested"
        );
    }

    #[test]
    fn schemas_translate_to_types() {
        let defs = BTreeMap::from([("Money".to_owned(), "Money".to_owned())]);
        let t = |s: Value| ty(&s, &defs, "");
        assert_eq!(t(json!({"type": "string"})), "string");
        assert_eq!(t(json!({"type": ["integer", "null"]})), "number | null");
        assert_eq!(t(json!({"$ref": "#/$defs/Money"})), "Money");
        assert_eq!(
            t(json!({"type": "array", "items": {"$ref": "#/$defs/Money"}})),
            "Money[]"
        );
        assert_eq!(
            t(json!({"oneOf": [{"const": "a"}, {"const": "b"}]})),
            "\"a\" | \"b\""
        );
        assert_eq!(
            t(json!({"type": "array", "items": {"oneOf": [{"const": "a"}, {"const": "b"}]}})),
            "(\"a\" | \"b\")[]"
        );
        assert_eq!(
            t(json!({"type": "object", "additionalProperties": {"type": "string"}})),
            "{\n  [key: string]: string;\n}"
        );
        assert_eq!(
            t(
                json!({"type": "object", "properties": {"a": {"type": "boolean"}, "b-c": {}}, "required": ["a"]})
            ),
            "{\n  a: boolean;\n  \"b-c\"?: unknown;\n}"
        );
    }
}
