//! TOML helpers: spans of keys, each section deserialized on its own,
//! toml's and serde's errors in mailform's words (never quoting a value).

use std::ops::Range;

use serde::Deserialize;
use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::config::model::Span;
use crate::diagnostic::{Diagnostic, Diagnostics, Origin, did_you_mean};

use super::MAX_DEPTH;

/// Where a key first has more than [`MAX_DEPTH`] dotted parts: the offset
/// of the dot that passes the limit, on the first line (before its `=`, if
/// any) that has that many. Linear in the text.
pub(super) fn deep_key_at(text: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let key = line.split('=').next().unwrap_or(line);
        if let Some((i, _)) = key.match_indices('.').nth(MAX_DEPTH - 1) {
            return Some(offset + i);
        }
        offset += line.len();
    }
    None
}

/// Rust type names in serde's messages, in the words of a TOML user.
pub(super) const TYPE_WORDS: [(&str, &str); 6] = [
    ("expected i64", "expected an integer"),
    ("expected u32", "expected a positive integer"),
    ("expected u16", "expected a port number"),
    ("expected a string", "expected a string (in quotes)"),
    (
        "expected a sequence",
        "expected an array like [\"a\", \"b\"]",
    ),
    ("expected a map", "expected a table"),
];

/// Turns a toml error into a diagnostic, adding "did you mean" to unknown fields.
pub(super) fn toml_error(e: &toml::de::Error, context: &str) -> Diagnostic {
    toml_error_in(e, context).origin(Origin::Shape)
}

/// serde's `invalid type: string "…", expected …` (and `invalid value:`)
/// with the value named by its kind only: a message never quotes a value
/// from the file (it may be a secret that landed where a table belongs);
/// the masked snippet shows where it is.
pub(super) fn without_values(message: &str) -> String {
    for lead in ["invalid type: ", "invalid value: "] {
        let Some(rest) = message.strip_prefix(lead) else {
            continue;
        };
        // The expected part is mailform's own words: the last ", expected"
        // is the real one even if the value holds those words.
        let (found, expected) = match rest.rfind(", expected ") {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, ""),
        };
        let kind = [
            ("string", "a string"),
            ("integer", "an integer"),
            ("floating point", "a number"),
            ("character", "a character"),
            ("boolean", "a boolean"),
        ]
        .iter()
        .find(|(k, _)| found.starts_with(k))
        .map_or(found, |(_, word)| *word);
        return format!("{lead}{kind}{expected}");
    }
    message.to_string()
}

pub(super) fn toml_error_in(e: &toml::de::Error, context: &str) -> Diagnostic {
    let mut message = without_values(e.message().trim());
    // serde's `unknown variant `x`, expected one of …`: say what is
    // allowed, without quoting the value (the snippet shows where it is).
    if let Some(rest) = message.strip_prefix("unknown variant `")
        && let Some((_, allowed)) = rest.split_once("`, expected ")
    {
        let allowed = allowed.trim_start_matches("one of ").to_string();
        let smtp = allowed.contains("`starttls`");
        let mut d = Diagnostic::error(format!(
            "{context}a value that is not allowed here; allowed: {allowed}"
        ))
        .at(e.span());
        if smtp {
            d = d.help("plaintext SMTP is not offered: security = \"starttls\" (usually port 587) or \"tls\" (465; \"ssl\" is its alias)");
        }
        return d;
    }
    for (from, to) in TYPE_WORDS {
        if message.ends_with(from) {
            message = format!("{}{to}", &message[..message.len() - from.len()]);
        }
    }
    let mut d = Diagnostic::error(format!("{context}{message}")).at(e.span());
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let quoted: Vec<&str> = rest.split('`').collect();
        // quoted = [field, ", expected one of ", a, ", ", b, ...]
        if let Some((field, others)) = quoted.split_first() {
            let expected: Vec<&str> = others.iter().skip(1).step_by(2).copied().collect();
            if let Some(s) = did_you_mean(field, expected.iter().copied()) {
                d = d.help(format!("did you mean `{s}`?"));
            }
        }
    }
    d
}

/// The field names a struct's `Deserialize` accepts, read from what serde's
/// derive hands a deserializer (its `FIELDS`); empty for anything else.
fn fields_of<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    struct Fields(&'static [&'static str]);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("stop")
        }
    }
    impl std::error::Error for Stop {}
    impl serde::de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    impl<'de> serde::Deserializer<'de> for &mut Fields {
        type Error = Stop;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0 = fields;
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields = Fields(&[]);
    let _ = T::deserialize(&mut fields);
    fields.0
}

/// Reports every key of `value` (a table) that `T` has no field for, as
/// serde words its first one, and takes them out, so the rest is checked
/// too: one run of `validate` shows every unknown key.
fn unknown_keys(
    value: &mut Spanned<DeValue<'_>>,
    fields: &[&'static str],
    context: &str,
    diags: &mut Diagnostics,
) {
    let DeValue::Table(table) = value.get_mut() else {
        return;
    };
    if fields.is_empty() {
        return;
    }
    if table.keys().all(|k| fields.contains(&k.get_ref().as_ref())) {
        return;
    }
    let unknown: Vec<_> = table
        .keys()
        .filter(|k| !fields.contains(&k.get_ref().as_ref()))
        .cloned()
        .collect();
    let expected = fields
        .iter()
        .map(|f| format!("`{f}`"))
        .collect::<Vec<_>>()
        .join(", ");
    for key in unknown {
        let name = key.get_ref().to_string();
        let mut d = Diagnostic::error(format!(
            "{context}unknown field `{}`, expected one of {expected}",
            crate::diagnostic::shown(&name)
        ))
        .at(Some(key.span()))
        .origin(Origin::Shape);
        let suggestion = did_you_mean(&name, fields.iter().copied());
        if let Some(s) = suggestion {
            d = d.help(format!("did you mean `{s}`?"));
        }
        diags.push(d);
        let entry = table.remove(&key);
        // A typo of a field that is not there stands in for it, so the rest
        // is checked as meant (no "missing field" for the same mistake).
        if let (Some(s), Some(v)) = (suggestion, entry)
            && !table.keys().any(|k| k.get_ref().as_ref() == s)
        {
            let span = key.span();
            table.insert(Spanned::new(span, toml::de::DeString::Borrowed(s)), v);
        }
    }
}

/// Deserializes one section; on failure records the error and yields `None`.
/// Every unknown key is reported first (and set aside), then the rest.
pub(super) fn section<T: for<'de> Deserialize<'de>>(
    value: Spanned<DeValue<'_>>,
    context: &str,
    diags: &mut Diagnostics,
) -> Option<T> {
    section_with(value, fields_of::<T>(), context, diags)
}

/// [`section`] with `T`'s fields read once by the caller (a table of many
/// entries of one type).
fn section_with<T: for<'de> Deserialize<'de>>(
    mut value: Spanned<DeValue<'_>>,
    fields: &[&'static str],
    context: &str,
    diags: &mut Diagnostics,
) -> Option<T> {
    let before = diags.error_count();
    unknown_keys(&mut value, fields, context, diags);
    let had_unknown = diags.error_count() > before;
    match T::deserialize(ValueDeserializer::from(value)) {
        Ok(_) if had_unknown => None,
        Ok(v) => Some(v),
        Err(e) => {
            diags.push(toml_error(&e, context));
            None
        }
    }
}

/// Deserializes each entry of a table of tables (`[providers.*]`, `[assets.*]`)
/// on its own, so every broken entry is reported.
pub(super) fn entries<T: for<'de> Deserialize<'de>>(
    value: Spanned<DeValue<'_>>,
    what: &str,
    diags: &mut Diagnostics,
) -> Vec<(String, Range<usize>, T)> {
    let span = value.span();
    let DeValue::Table(table) = value.into_inner() else {
        diags.push(
            Diagnostic::error(format!("`{what}` must be a table of tables"))
                .at(Some(span))
                .help(format!("write each entry as [{what}.NAME]")),
        );
        return Vec::new();
    };
    let kind = if what == "assets" {
        "asset"
    } else {
        "provider"
    };
    let mut out = Vec::with_capacity(table.len());
    let fields = fields_of::<T>();
    for (key, entry) in table {
        let name = key.get_ref().to_string();
        if let Some(v) = section_with::<T>(entry, fields, &format!("{kind} `{name}`: "), diags) {
            out.push((name, key.span(), v));
        }
    }
    out
}

/// Span of a nested key's value, for errors found after deserialization.
pub(super) fn span_of(root: &DeTable<'_>, path: &[&str]) -> Span {
    let (first, rest) = path.split_first()?;
    let mut value = root.get(*first)?;
    for key in rest {
        let DeValue::Table(t) = value.get_ref() else {
            return None;
        };
        value = t.get(*key)?;
    }
    Some(value.span())
}
