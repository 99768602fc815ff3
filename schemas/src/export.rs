//! Generating the schema files under `schemas/json/` and checking committed files against the
//! code.
//!
//! The files: `<type>.schema.json` (the JSON Schema of the event's `data`),
//! `envelope/<type>.schema.json` (the whole CloudEvents envelope of that type) and `catalog.json`
//! (the index: type, domain, description, files). Write them with `python3 dev.py schemas`
//! (`cargo run -p conveyor-schemas --bin export-schemas`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::catalog::{Entry, catalog};
use crate::compat::{self, Incompatibility};

/// The committed schema directory of this crate.
pub fn default_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("json")
}

/// What differs between the code and a schema directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Files whose content the code would change.
    pub changed: Vec<String>,
    /// Files the code generates that the directory lacks.
    pub added: Vec<String>,
    /// Files in the directory the code no longer generates.
    pub removed: Vec<String>,
    /// Breaking changes of event types, compared with the directory's schemas.
    pub incompatibilities: Vec<Incompatibility>,
}

impl Report {
    /// True when the directory matches the code exactly.
    pub fn is_clean(&self) -> bool {
        self.changed.is_empty() && self.added.is_empty() && self.removed.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for i in &self.incompatibilities {
            writeln!(f, "breaking: {i}")?;
        }
        for (what, files) in [
            ("changed", &self.changed),
            ("added", &self.added),
            ("removed", &self.removed),
        ] {
            for file in files {
                writeln!(f, "{what}: {file}")?;
            }
        }
        Ok(())
    }
}

/// Why exporting or checking failed.
#[derive(Debug)]
pub enum ExportError {
    /// Reading or writing the directory failed.
    Io(PathBuf, std::io::Error),
    /// A committed file is not valid JSON.
    InvalidJson(PathBuf, serde_json::Error),
    /// The code breaks committed event types; nothing was written.
    Breaking(Vec<Incompatibility>),
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(p, e) => write!(f, "{}: {e}", p.display()),
            Self::InvalidJson(p, e) => write!(f, "{} is not valid JSON: {e}", p.display()),
            Self::Breaking(list) => {
                writeln!(
                    f,
                    "breaking changes to published event types (add a new type such as `order.created.v2` instead):"
                )?;
                for i in list {
                    writeln!(f, "  {i}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ExportError {}

fn pretty(value: &Value) -> String {
    let mut s = serde_json::to_string_pretty(value).unwrap_or_default();
    s.push('\n');
    s
}

fn data_schema(entry: &Entry) -> Value {
    let mut schema = entry.schema();
    if let Some(obj) = schema.as_object_mut() {
        obj.insert("examples".into(), json!([entry.example()]));
    }
    schema
}

/// The CloudEvents envelope schema of one event type: the envelope attributes, and `data`
/// holding the type's schema (its `$defs` moved to the envelope's root so references resolve).
pub fn envelope_schema(entry: &Entry) -> Value {
    let ty = entry.event_type();
    let mut data = entry.schema();
    let defs = data
        .as_object_mut()
        .and_then(|o| {
            for key in ["$schema", "$id", "title", "x-conveyor-type"] {
                o.remove(key);
            }
            o.remove("$defs")
        })
        .unwrap_or_else(|| json!({}));
    // Each type's example has its own id: an app that publishes the examples as they are must
    // not have all but one dropped as duplicates.
    let example_id = format!("example-{ty}");
    let mut example_envelope = json!({
        "specversion": "1.0",
        "id": example_id,
        "source": "checkout-api",
        "type": ty,
        "time": "2026-11-22T09:00:00.000000Z",
        "datacontenttype": "application/json",
        "tenantid": "acme",
        "data": entry.example(),
    });
    if let Some(o) = example_envelope.as_object_mut() {
        o.insert("correlationid".into(), json!(example_id));
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("https://conveyor.dev/schemas/envelope/{ty}.schema.json"),
        "title": format!("{ty} CloudEvent"),
        "description": format!(
            "CloudEvents 1.0 envelope (JSON structured mode) of a {ty} event, published on the subject events.<tenantid>.{ty} with the header Nats-Msg-Id = <tenantid>:<id>. {}",
            entry.description()
        ),
        "type": "object",
        "required": ["specversion", "id", "source", "type", "tenantid", "data"],
        "properties": {
            "specversion": {"const": "1.0", "description": "CloudEvents spec version."},
            "id": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]+$", "description": "Unique event id (1 to 256 bytes, no control characters); the Nats-Msg-Id is <tenantid>:<id>, so a re-publish inside the duplicate window is stored once."},
            "source": {"type": "string", "minLength": 1, "description": "The publishing app."},
            "type": {"const": ty, "description": "The event type."},
            "time": {"type": "string", "format": "date-time", "description": "When the event happened (RFC 3339)."},
            "datacontenttype": {"const": "application/json", "description": "The data is JSON."},
            "tenantid": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$", "description": "The tenant; must equal token 2 of the subject."},
            "traceparent": {"type": "string", "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$", "description": "W3C trace context."},
            "correlationid": {"type": "string", "description": "Id shared by every event of one causal chain."},
            "causationid": {"type": "string", "description": "Id of the event that caused this one."},
            "data": data,
        },
        "$defs": defs,
        "examples": [example_envelope],
    })
}

/// Every file the code generates, by path relative to the schema directory.
pub fn generate() -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    let mut index = Vec::new();
    for entry in catalog() {
        let ty = entry.event_type();
        files.insert(format!("{ty}.schema.json"), pretty(&data_schema(entry)));
        files.insert(
            format!("envelope/{ty}.schema.json"),
            pretty(&envelope_schema(entry)),
        );
        index.push(json!({
            "type": ty,
            "domain": entry.domain(),
            "description": entry.description(),
            "subject": format!("events.<tenant>.{ty}"),
            "schema": format!("{ty}.schema.json"),
            "envelope_schema": format!("envelope/{ty}.schema.json"),
        }));
    }
    files.insert(
        "catalog.json".into(),
        pretty(&json!({
            "specversion": "1.0",
            "subject": "events.<tenant>.<type>",
            "events": index,
        })),
    );
    files
}

/// Reads every `.json` file under `dir`, by path relative to it (missing dir: empty).
pub fn read_dir(dir: &Path) -> Result<BTreeMap<String, String>, ExportError> {
    let mut out = BTreeMap::new();
    if !dir.exists() {
        return Ok(out);
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| ExportError::Io(d.clone(), e))?;
        for entry in entries {
            let path = entry.map_err(|e| ExportError::Io(d.clone(), e))?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "json") {
                let text =
                    std::fs::read_to_string(&path).map_err(|e| ExportError::Io(path.clone(), e))?;
                let rel = path
                    .strip_prefix(dir)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(rel, text);
            }
        }
    }
    Ok(out)
}

/// The data schemas (`<type>.schema.json`) among `files`, by event type.
fn data_schemas(
    files: &BTreeMap<String, String>,
    dir: &Path,
) -> Result<BTreeMap<String, Value>, ExportError> {
    let mut out = BTreeMap::new();
    for (path, text) in files {
        if path.contains('/') || path == "catalog.json" {
            continue;
        }
        if let Some(ty) = path.strip_suffix(".schema.json") {
            let value: Value = serde_json::from_str(text)
                .map_err(|e| ExportError::InvalidJson(dir.join(path), e))?;
            out.insert(ty.to_owned(), value);
        }
    }
    Ok(out)
}

/// Compares the code with the files in `dir`: drift and breaking changes.
pub fn check_dir(dir: &Path) -> Result<Report, ExportError> {
    let committed = read_dir(dir)?;
    let generated = generate();
    let mut report = Report {
        incompatibilities: compat::check(
            &data_schemas(&committed, dir)?,
            &data_schemas(&generated, dir)?,
        ),
        ..Report::default()
    };
    for (path, text) in &generated {
        match committed.get(path) {
            None => report.added.push(path.clone()),
            Some(old) if old != text => report.changed.push(path.clone()),
            Some(_) => {}
        }
    }
    report.removed = committed
        .keys()
        .filter(|p| !generated.contains_key(*p))
        .cloned()
        .collect();
    Ok(report)
}

/// Writes the generated files into `dir` (removing ones no longer generated), unless the code
/// breaks an event type the directory already has and `allow_breaking` is false.
pub fn write_dir(dir: &Path, allow_breaking: bool) -> Result<Report, ExportError> {
    let report = check_dir(dir)?;
    if !report.incompatibilities.is_empty() && !allow_breaking {
        return Err(ExportError::Breaking(report.incompatibilities));
    }
    for (path, text) in generate() {
        let target = dir.join(&path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| ExportError::Io(parent.to_path_buf(), e))?;
        }
        std::fs::write(&target, text).map_err(|e| ExportError::Io(target.clone(), e))?;
    }
    for path in &report.removed {
        let target = dir.join(path);
        std::fs::remove_file(&target).map_err(|e| ExportError::Io(target.clone(), e))?;
    }
    Ok(report)
}
