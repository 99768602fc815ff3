//! Compatibility of event schemas: which changes existing publishers and consumers survive.
//!
//! Compatible (additive): a new optional field, a new enum value, a wider type (`integer` to
//! `number`, accepting `null`), a looser constraint. Breaking: a removed or renamed field, a new
//! required field (or an optional one becoming required), a narrowed type, a removed enum
//! value, a tighter constraint, no longer accepting unknown fields, a removed event type.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// A change that breaks existing publishers or consumers of an event type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatibility {
    /// The event type.
    pub event_type: String,
    /// Where in the payload, e.g. `data.lines[].quantity`.
    pub path: String,
    /// What changed.
    pub message: String,
}

impl std::fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.event_type, self.path, self.message)
    }
}

/// Compares the schemas of every event type in `old` (what is published today) with `new`.
pub fn check(old: &BTreeMap<String, Value>, new: &BTreeMap<String, Value>) -> Vec<Incompatibility> {
    let mut out = Vec::new();
    for (event_type, old_schema) in old {
        match new.get(event_type) {
            None => out.push(Incompatibility {
                event_type: event_type.clone(),
                path: "data".into(),
                message: "event type removed".into(),
            }),
            Some(new_schema) => {
                let mut cx = Cx {
                    event_type,
                    old_root: old_schema,
                    new_root: new_schema,
                    out: &mut out,
                    depth: 0,
                };
                cx.compare(old_schema, new_schema, "data");
            }
        }
    }
    out
}

struct Cx<'a> {
    event_type: &'a str,
    old_root: &'a Value,
    new_root: &'a Value,
    out: &'a mut Vec<Incompatibility>,
    depth: usize,
}

/// Follows a local `$ref` (`#/$defs/Name`).
fn resolve<'v>(root: &'v Value, node: &'v Value) -> &'v Value {
    let mut node = node;
    for _ in 0..16 {
        match node.get("$ref").and_then(Value::as_str) {
            Some(r) => match r
                .strip_prefix("#/")
                .map(|p| p.split('/').collect::<Vec<_>>())
            {
                Some(parts) => {
                    let mut target = root;
                    for p in parts {
                        match target.get(p) {
                            Some(t) => target = t,
                            None => return node,
                        }
                    }
                    node = target;
                }
                None => return node,
            },
            None => return node,
        }
    }
    node
}

/// The JSON types a schema node accepts (`None` when it does not say).
fn types(node: &Value) -> Option<BTreeSet<String>> {
    let mut set = BTreeSet::new();
    match node.get("type") {
        Some(Value::String(t)) => {
            set.insert(t.clone());
        }
        Some(Value::Array(ts)) => {
            set.extend(ts.iter().filter_map(Value::as_str).map(str::to_owned))
        }
        _ => {
            if let Some(values) = node.get("enum").and_then(Value::as_array) {
                set.extend(values.iter().map(json_type));
            } else if let Some(c) = node.get("const") {
                set.insert(json_type(c));
            } else {
                return None;
            }
        }
    }
    Some(set)
}

fn json_type(v: &Value) -> String {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
    .to_owned()
}

/// The non-null alternatives of a node (`anyOf`/`oneOf`), and whether it accepts null.
fn alternatives(node: &Value) -> (Vec<&Value>, bool) {
    let alts = node
        .get("anyOf")
        .or_else(|| node.get("oneOf"))
        .and_then(Value::as_array);
    match alts {
        Some(alts) => {
            let nullable = alts
                .iter()
                .any(|a| a.get("type").and_then(Value::as_str) == Some("null"));
            let rest = alts
                .iter()
                .filter(|a| a.get("type").and_then(Value::as_str) != Some("null"))
                .collect();
            (rest, nullable)
        }
        None => {
            let nullable = types(node).is_some_and(|t| t.contains("null"));
            (vec![node], nullable)
        }
    }
}

impl Cx<'_> {
    fn report(&mut self, path: &str, message: String) {
        self.out.push(Incompatibility {
            event_type: self.event_type.to_owned(),
            path: path.to_owned(),
            message,
        });
    }

    fn compare(&mut self, old: &Value, new: &Value, path: &str) {
        if self.depth > 32 {
            return;
        }
        self.depth += 1;
        let old = resolve(self.old_root, old);
        let new = resolve(self.new_root, new);
        let (old_alts, old_null) = alternatives(old);
        let (new_alts, new_null) = alternatives(new);
        if old_null && !new_null {
            self.report(path, "no longer accepts null".into());
        }
        let consts = |alts: &[&Value]| -> Option<Vec<Value>> {
            alts.iter().map(|a| a.get("const").cloned()).collect()
        };
        if let (Some(old_values), Some(new_values)) = (consts(&old_alts), consts(&new_alts))
            && old_alts.len() > 1
        {
            for v in old_values.iter().filter(|v| !new_values.contains(v)) {
                self.report(path, format!("enum value {v} removed"));
            }
        } else if old_alts.len() == 1 && new_alts.len() == 1 {
            let (o, n) = (
                resolve(self.old_root, old_alts[0]),
                resolve(self.new_root, new_alts[0]),
            );
            self.compare_node(o, n, path);
        } else if old_alts.len() > new_alts.len() {
            self.report(path, "accepts fewer alternatives".into());
        }
        self.depth -= 1;
    }

    fn compare_node(&mut self, old: &Value, new: &Value, path: &str) {
        if let (Some(mut o), Some(mut n)) = (types(old), types(new)) {
            o.remove("null");
            n.remove("null");
            let lost: Vec<&String> = o
                .iter()
                .filter(|t| !(n.contains(*t) || (t.as_str() == "integer" && n.contains("number"))))
                .collect();
            if !lost.is_empty() {
                self.report(
                    path,
                    format!("type narrowed from {o:?} to {n:?} (no longer accepts {lost:?})"),
                );
                return;
            }
        }
        if let Some(old_enum) = old.get("enum").and_then(Value::as_array) {
            let new_enum = new.get("enum").and_then(Value::as_array);
            for v in old_enum {
                if new_enum.is_some_and(|n| !n.contains(v)) {
                    self.report(path, format!("enum value {v} removed"));
                }
            }
        }
        if let Some(c) = old.get("const")
            && new.get("const").is_some_and(|n| n != c)
        {
            self.report(path, format!("constant changed from {c}"));
        }
        self.compare_constraints(old, new, path);
        self.compare_object(old, new, path);
        if let (Some(o), Some(n)) = (old.get("items"), new.get("items")) {
            self.compare(o, n, &format!("{path}[]"));
        }
        if let (Some(o), Some(n)) = (
            old.get("additionalProperties").filter(|v| v.is_object()),
            new.get("additionalProperties").filter(|v| v.is_object()),
        ) {
            self.compare(o, n, &format!("{path}{{}}"));
        }
    }

    fn compare_constraints(&mut self, old: &Value, new: &Value, path: &str) {
        let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64);
        for key in ["minimum", "exclusiveMinimum", "minLength", "minItems"] {
            if let Some(n) = num(new, key)
                && num(old, key).is_none_or(|o| n > o)
            {
                self.report(path, format!("{key} raised to {n}"));
            }
        }
        for key in ["maximum", "exclusiveMaximum", "maxLength", "maxItems"] {
            if let Some(n) = num(new, key)
                && num(old, key).is_none_or(|o| n < o)
            {
                self.report(path, format!("{key} lowered to {n}"));
            }
        }
        if let Some(p) = new.get("pattern")
            && old.get("pattern") != Some(p)
        {
            self.report(path, format!("pattern changed to {p}"));
        }
    }

    fn compare_object(&mut self, old: &Value, new: &Value, path: &str) {
        let empty = serde_json::Map::new();
        let old_props = old
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let new_props = new
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        if old_props.is_empty() && new_props.is_empty() {
            return;
        }
        let required = |v: &Value| -> BTreeSet<String> {
            v.get("required")
                .and_then(Value::as_array)
                .map(|r| {
                    r.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let (old_req, new_req) = (required(old), required(new));
        for (name, old_schema) in old_props {
            let field = format!("{path}.{name}");
            match new_props.get(name) {
                None => self.report(&field, "field removed or renamed".into()),
                Some(new_schema) => self.compare(old_schema, new_schema, &field),
            }
        }
        for name in new_req.difference(&old_req) {
            let field = format!("{path}.{name}");
            if old_props.contains_key(name) {
                self.report(&field, "optional field became required".into());
            } else {
                self.report(&field, "new required field".into());
            }
        }
        let closed = |v: &Value| v.get("additionalProperties") == Some(&Value::Bool(false));
        if closed(new) && !closed(old) {
            self.report(path, "no longer accepts unknown fields".into());
        }
    }
}
