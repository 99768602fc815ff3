//! A form generated from a JSON Schema, and the JSON value read back from what was submitted.
//!
//! Scalars (strings, integers, numbers, booleans, enums) get an input each, objects a fieldset
//! of their properties; arrays and anything else a JSON text area. Field names are the path to
//! the value (`f.total.amount_minor`).

use std::collections::HashMap;

use maud::{Markup, html};
use serde_json::{Map, Value};

/// The prefix of every generated field.
const PREFIX: &str = "f";

/// Resolves `{"$ref": "#/$defs/X"}` against `root`.
fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .strip_prefix("#/")
            .map(|p| {
                p.split('/')
                    .fold(root, |v, k| v.get(k).unwrap_or(&Value::Null))
            })
            .unwrap_or(schema),
        None => schema,
    }
}

/// The options of an enum written as `oneOf` of `const`s (or `enum`).
fn options(schema: &Value) -> Option<Vec<String>> {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return Some(
            values
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
        );
    }
    let one_of = schema.get("oneOf")?.as_array()?;
    one_of
        .iter()
        .map(|o| o.get("const").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

fn kind(schema: &Value) -> &str {
    match schema.get("type") {
        Some(Value::String(t)) => t,
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("string"),
        _ => "",
    }
}

/// The fields of an object schema, prefilled from `values` (what was sent, or the example).
pub(crate) fn fields(root: &Value, values: &Value) -> Markup {
    object_fields(root, root, values, PREFIX)
}

fn object_fields(root: &Value, schema: &Value, values: &Value, path: &str) -> Markup {
    let empty = Map::new();
    let props = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    html! {
        @for (key, prop) in props {
            (field(root, prop, values.get(key).unwrap_or(&Value::Null), &format!("{path}.{key}"), key, required.contains(&key.as_str())))
        }
    }
}

fn field(
    root: &Value,
    prop: &Value,
    value: &Value,
    name: &str,
    label: &str,
    required: bool,
) -> Markup {
    let schema = resolve(root, prop);
    let description = prop
        .get("description")
        .or_else(|| schema.get("description"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let mark = if required { " *" } else { "" };
    if let Some(opts) = options(schema) {
        let current = value.as_str().unwrap_or("");
        return html! {
            label title=(description) { (label) (mark)
                select name=(name) {
                    @if !required { option value="" { "-" } }
                    @for o in &opts { option value=(o) selected[o == current] { (o) } }
                }
            }
        };
    }
    match kind(schema) {
        "object" if schema.get("properties").is_some() => html! {
            fieldset title=(description) { legend { (label) (mark) } (object_fields(root, schema, value, name)) }
        },
        "string" | "integer" | "number" => {
            let input_type = if kind(schema) == "string" {
                "text"
            } else {
                "number"
            };
            let step = (kind(schema) == "number").then_some("any");
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                v => v.to_string(),
            };
            html! {
                label title=(description) { (label) (mark) span.muted { " " (description) }
                    input type=(input_type) step=[step] name=(name) value=(text) required[required];
                }
            }
        }
        "boolean" => html! {
            label title=(description) { span { input type="checkbox" name=(name) value="true" checked[value.as_bool() == Some(true)]; " " (label) (mark) } }
        },
        _ => {
            let text = if value.is_null() {
                String::new()
            } else {
                serde_json::to_string_pretty(value).unwrap_or_default()
            };
            html! {
                label title=(description) { (label) (mark) " (JSON)" span.muted { " " (description) }
                    textarea name={ (name) ".json" } rows="6" required[required] { (text) }
                }
            }
        }
    }
}

/// Reads the submitted form back into the JSON value the schema describes. Empty optional
/// fields are left out; a number that does not parse is kept as text so the schema check
/// names it.
pub(crate) fn read(root: &Value, form: &HashMap<String, String>) -> Result<Value, String> {
    read_object(root, root, form, PREFIX)
}

fn read_object(
    root: &Value,
    schema: &Value,
    form: &HashMap<String, String>,
    path: &str,
) -> Result<Value, String> {
    let mut out = Map::new();
    let empty = Map::new();
    let props = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    for (key, prop) in props {
        let name = format!("{path}.{key}");
        let s = resolve(root, prop);
        let value = if options(s).is_some() {
            form.get(&name)
                .filter(|v| !v.is_empty())
                .map(|v| Value::String(v.clone()))
        } else {
            match kind(s) {
                "object" if s.get("properties").is_some() => {
                    let v = read_object(root, s, form, &name)?;
                    (v.as_object().is_some_and(|o| !o.is_empty())).then_some(v)
                }
                "string" => form
                    .get(&name)
                    .filter(|v| !v.is_empty())
                    .map(|v| Value::String(v.clone())),
                "integer" => form.get(&name).filter(|v| !v.is_empty()).map(|v| {
                    v.trim()
                        .parse::<i64>()
                        .map_or_else(|_| Value::String(v.clone()), Value::from)
                }),
                "number" => form.get(&name).filter(|v| !v.is_empty()).map(|v| {
                    v.trim()
                        .parse::<f64>()
                        .ok()
                        .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
                        .unwrap_or_else(|| Value::String(v.clone()))
                }),
                "boolean" => Some(Value::Bool(form.get(&name).is_some_and(|v| v == "true"))),
                _ => match form
                    .get(&format!("{name}.json"))
                    .filter(|v| !v.trim().is_empty())
                {
                    Some(text) => Some(
                        serde_json::from_str(text).map_err(|e| format!("{key}: not JSON: {e}"))?,
                    ),
                    None => None,
                },
            }
        };
        if let Some(v) = value {
            out.insert(key.clone(), v);
        }
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_form_reads_back_into_the_schemas_value() {
        let schema = json!({
            "$defs": {"Money": {"type": "object", "properties": {"amount_minor": {"type": "integer"}, "currency": {"type": "string"}}, "required": ["amount_minor", "currency"]}},
            "type": "object",
            "properties": {
                "order_id": {"type": "string"},
                "total": {"$ref": "#/$defs/Money"},
                "lines": {"type": "array", "items": {}},
                "gift": {"type": "boolean"},
                "note": {"type": ["string", "null"]},
                "channel": {"oneOf": [{"const": "email"}, {"const": "sms"}]}
            },
            "required": ["order_id", "total", "lines"]
        });
        let form: HashMap<String, String> = [
            ("f.order_id", "o-1"),
            ("f.total.amount_minor", "1250"),
            ("f.total.currency", "EUR"),
            ("f.lines.json", "[{\"sku\": \"a\"}]"),
            ("f.gift", "true"),
            ("f.note", ""),
            ("f.channel", "sms"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let value = read(&schema, &form).unwrap();
        assert_eq!(
            value,
            json!({"order_id": "o-1", "total": {"amount_minor": 1250, "currency": "EUR"}, "lines": [{"sku": "a"}], "gift": true, "channel": "sms"})
        );
        let html = fields(&schema, &value).into_string();
        assert!(html.contains("name=\"f.total.amount_minor\""), "{html}");
        assert!(html.contains("name=\"f.lines.json\""));
        assert!(html.contains("<option value=\"sms\" selected>"), "{html}");
    }
}
