//! The CassandraSink reference page (`docs/reference.md`), generated from the CRD's schema so that it
//! says exactly what the API server enforces. `crdgen` writes it; a test fails when it drifts.

use serde_json::Value;

/// One row per field: path, type, default, description (first paragraph, on one line).
fn walk(path: &str, schema: &Value, rows: &mut Vec<[String; 4]>) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (name, field) in properties {
        let field_path = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        let mut kind = field
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("object")
            .to_owned();
        if let Some(values) = field.get("enum").and_then(Value::as_array) {
            kind = values
                .iter()
                .filter_map(Value::as_str)
                .map(|value| format!("`{value}`"))
                .collect::<Vec<_>>()
                .join(" \\| ");
        }
        if kind == "array"
            && let Some(items) = field.pointer("/items/type").and_then(Value::as_str)
        {
            kind = format!("array of {items}");
        }
        if required.contains(&name.as_str()) {
            kind.push_str(", required");
        }
        let default = field
            .get("default")
            .map(|value| format!("`{value}`"))
            .unwrap_or_default();
        let description = field
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .split("\n\n")
            .next()
            .unwrap_or_default()
            .replace('\n', " ")
            .replace('|', "\\|");
        rows.push([format!("`{field_path}`"), kind, default, description]);
        walk(&field_path, field, rows);
        if let Some(items) = field.get("items") {
            walk(&format!("{field_path}[]"), items, rows);
        }
    }
}

/// The reference page in Markdown.
pub fn markdown(crd: &Value) -> String {
    let schema = crd
        .pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec")
        .cloned()
        .unwrap_or_default();
    let mut rows = Vec::new();
    walk("spec", &schema, &mut rows);
    let mut page = String::from(
        "# CassandraSink reference\n\n\
         Generated from the CRD's schema by `cargo run -p cassandra-sink-operator --bin crdgen`; do not \
         edit. `kubectl explain cassandrasinks.spec` shows the same text.\n\n\
         | field | type | default | description |\n| --- | --- | --- | --- |\n",
    );
    for [path, kind, default, description] in rows {
        page.push_str(&format!(
            "| {path} | {kind} | {default} | {description} |\n"
        ));
    }
    page
}
