//! JSON Schemas generated from the types: `assets.toml` ([`RawConfig`]), the
//! state file ([`State`]), plan JSON ([`Plan`]) and diagnostics JSON
//! ([`DiagnosticsDoc`]). The committed copies in
//! `schemas/` are checked against these by a test.

use schemars::generate::SchemaSettings;
use serde_json::Value;

use crate::cli::SchemaKind;
use crate::config::raw::RawConfig;
use crate::plan::Plan;
use crate::render::diagnostic::DiagnosticsDoc;
use crate::state::State;

/// The schema as pretty JSON with a trailing newline.
pub fn json(kind: SchemaKind) -> String {
    let schema = match kind {
        // TOML has no null: an optional key is simply absent.
        SchemaKind::Config => {
            let schema = SchemaSettings::draft2020_12()
                .into_generator()
                .into_root_schema_for::<RawConfig>();
            let mut value = schema.to_value();
            strip_null(&mut value);
            value
        }
        SchemaKind::State => SchemaSettings::draft2020_12()
            .into_generator()
            .into_root_schema_for::<State>()
            .to_value(),
        SchemaKind::Plan => SchemaSettings::draft2020_12()
            .into_generator()
            .into_root_schema_for::<Plan>()
            .to_value(),
        SchemaKind::Diagnostics => SchemaSettings::draft2020_12()
            .into_generator()
            .into_root_schema_for::<DiagnosticsDoc>()
            .to_value(),
        SchemaKind::Apply => SchemaSettings::draft2020_12()
            .into_generator()
            .into_root_schema_for::<crate::render::apply::ApplyDoc>()
            .to_value(),
    };
    serde_json::to_string_pretty(&schema).expect("schemas serialize") + "\n"
}

/// Removes the `null` alternatives schemars adds for `Option` fields.
fn strip_null(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    map.insert("type".into(), only);
                }
            }
            for key in ["anyOf", "oneOf"] {
                if let Some(Value::Array(alternatives)) = map.get_mut(key) {
                    alternatives.retain(|a| a.get("type").is_none_or(|t| t != "null"));
                    if alternatives.len() == 1 {
                        let Some(Value::Object(only)) = alternatives.pop() else {
                            continue;
                        };
                        map.remove(key);
                        map.extend(only);
                    }
                }
            }
            map.values_mut().for_each(strip_null);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_null),
        _ => {}
    }
}

/// The committed file for each schema, relative to the repository root.
pub fn file_name(kind: SchemaKind) -> &'static str {
    match kind {
        SchemaKind::Config => "schemas/assets.schema.json",
        SchemaKind::State => "schemas/state.schema.json",
        SchemaKind::Plan => "schemas/plan.schema.json",
        SchemaKind::Diagnostics => "schemas/diagnostics.schema.json",
        SchemaKind::Apply => "schemas/apply.schema.json",
    }
}
