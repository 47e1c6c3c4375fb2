//! A plan for people: one line per asset that changes, its field diffs, its
//! warnings, then a summary line. `+` create, `~` update, `!` re-consent,
//! `-` delete.

use std::fmt::Write as _;

use similar::{ChangeTag, TextDiff};

use super::style;
use crate::plan::{Action, Change, FieldChange, Plan, Reason};
use crate::state::Value;

/// The human rendering of `plan`.
pub fn human(plan: &Plan) -> String {
    let mut out = String::new();
    let shown: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|c| c.action != Action::NoOp || !c.warnings.is_empty())
        .collect();
    if plan.is_empty() {
        let n = plan.changes.len();
        let _ = writeln!(
            out,
            "No changes. {} match{} the configuration.",
            if n == 1 {
                "1 asset".to_string()
            } else {
                format!("{n} assets")
            },
            if n == 1 { "es" } else { "" }
        );
    } else {
        out.push_str("mailform will:\n\n");
    }
    let width = shown
        .iter()
        .map(|c| crate::diagnostic::escaped(&c.asset).chars().count())
        .max()
        .unwrap_or(0);
    for change in &shown {
        render_change(&mut out, change, width);
    }
    if !shown.is_empty() {
        out.push('\n');
    }
    if !plan.is_empty() {
        let s = &plan.summary;
        let _ = writeln!(
            out,
            "{b}Plan:{b:#} {} to create, {} to update, {} to re-consent, {} to delete, {} unchanged.",
            s.create,
            s.update,
            s.reconsent,
            s.delete,
            s.no_op,
            b = style::BOLD
        );
    }
    if !plan.live {
        let _ = writeln!(
            out,
            "{d}Offline plan: tokens and SMTP logins were not checked live; decisions come from state.{d:#}",
            d = style::DIM
        );
    }
    out
}

fn render_change(out: &mut String, c: &Change, width: usize) {
    let (mark, verb, st) = match c.action {
        Action::Create => ("+", "create", style::CREATE),
        Action::Update => ("~", "update", style::UPDATE),
        Action::Reconsent if c.grant.is_some() => ("!", "new token", style::RECONSENT),
        Action::Reconsent => ("!", "re-consent", style::RECONSENT),
        Action::Delete => ("-", "delete", style::DELETE),
        Action::NoOp => (" ", "no change", style::DIM),
    };
    // Words from servers (and from a saved plan file) cannot move the cursor.
    let esc = |t: &str| crate::diagnostic::shown_up_to(t, 2000).into_owned();
    // Names, emails and values from state and config the same way.
    let why = headline(c);
    let _ = writeln!(
        out,
        "  {st}{mark} {:<width$}  {verb:<10}{st:#}  {} ({}){}",
        esc(&c.asset),
        esc(&c.email),
        esc(&c.provider),
        if why.is_empty() {
            String::new()
        } else {
            format!(": {}", esc(&why))
        },
    );
    for f in &c.fields {
        render_field(out, f, c.grant.is_some());
    }
    for r in &c.reasons {
        if let Reason::SmtpLoginRefused { hint: Some(h), .. }
        | Reason::ImapLoginRefused { hint: Some(h), .. }
        | Reason::ForwardingDrift { hint: h, .. }
        | Reason::AppGrantRefused { hint: h, .. } = r
        {
            let _ = writeln!(out, "      hint: {}", esc(h));
        }
    }
    for w in &c.warnings {
        let _ = writeln!(out, "      {st}warning:{st:#} {}", esc(w), st = style::WARN);
    }
}

/// The reasons, in a few words.
fn headline(c: &Change) -> String {
    let parts: Vec<String> = c
        .reasons
        .iter()
        .filter_map(|r| match r {
            Reason::NotInState => Some("consent needed".into()),
            Reason::AppGrantNeeded => Some("app grant: no consent".into()),
            Reason::AppGrantRefused {
                error, description, ..
            } => Some(match description {
                Some(d) => format!("the provider refused the app's token request ({error}: {d})"),
                None => format!("the provider refused the app's token request ({error})"),
            }),
            Reason::ReconsentRequested => Some("consent again requested (--reconsent)".into()),
            Reason::NotInConfig if c.grant.is_some() => {
                Some("an app grant, forgotten (there is nothing to revoke)".into())
            }
            Reason::NotInConfig => Some("tokens revoked at the provider, then forgotten".into()),
            Reason::TokenMissing => Some("no tokens stored".into()),
            Reason::TokenRevoked { error, description } => Some(match description {
                Some(d) => format!("refresh token revoked or expired ({error}: {d})"),
                None => format!("refresh token revoked or expired ({error})"),
            }),
            Reason::TokenUnreadable { why } => {
                Some(format!("stored tokens cannot be opened ({why})"))
            }
            Reason::TokenExpired { at } => Some(format!(
                "tokens expired {} UTC",
                at.format("%Y-%m-%d %H:%M")
            )),
            Reason::ScopesShort { missing } => {
                Some(format!("granted scopes lack {}", missing.join(", ")))
            }
            Reason::BindingChanged { fields } if fields.is_empty() => {
                Some("token-binding settings changed".into())
            }
            Reason::BindingChanged { fields } => Some(format!(
                "{} changed",
                fields
                    .iter()
                    .map(|f| f.path())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Reason::SmtpLoginRefused {
                server,
                reply,
                checked_at,
                reconsent,
                ..
            } => {
                let when = checked_at
                    .map(|at| format!(" at the last check ({} UTC)", at.format("%Y-%m-%d %H:%M")))
                    .unwrap_or_default();
                let whose = if *reconsent {
                    " as not this mailbox's token"
                } else {
                    ""
                };
                Some(format!(
                    "SMTP login refused by {server}{when}{whose} — {reply}"
                ))
            }
            Reason::ImapLoginRefused {
                server,
                reply,
                checked_at,
                ..
            } => Some(match checked_at {
                None => format!("IMAP login refused by {server} — {reply}"),
                Some(at) => format!(
                    "IMAP login refused by {server} at the last check ({} UTC) — {reply}",
                    at.format("%Y-%m-%d %H:%M")
                ),
            }),
            Reason::ForwardingDrift {
                what, checked_at, ..
            } => Some(match checked_at {
                None => format!("Gmail forwarding: {what}"),
                Some(at) => format!(
                    "Gmail forwarding: {what} (at the last check, {} UTC)",
                    at.format("%Y-%m-%d %H:%M")
                ),
            }),
            Reason::ImapNotProven {
                server,
                why,
                checked_at,
            } => Some(format!(
                "IMAP login never proven at {server} (apply's check of {} UTC: {why})",
                checked_at.format("%Y-%m-%d %H:%M")
            )),
            Reason::SmtpNotProven {
                server,
                why,
                checked_at,
            } => Some(format!(
                "SMTP login never proven at {server} (apply's check of {} UTC: {why})",
                checked_at.format("%Y-%m-%d %H:%M")
            )),
            Reason::FieldsChanged { .. } => None,
        })
        .collect();
    parts.join("; ")
}

fn render_field(out: &mut String, f: &FieldChange, app: bool) {
    let note = if f.forces_reconsent && app {
        format!("{s}(forces a new token){s:#}", s = style::RECONSENT)
    } else if f.forces_reconsent {
        format!("{s}(forces re-consent){s:#}", s = style::RECONSENT)
    } else {
        String::new()
    };
    let is_list = |v: &Option<Value>| matches!(v, Some(Value::List(_)));
    if is_list(&f.before) || is_list(&f.after) {
        let sep = if note.is_empty() { "" } else { " " };
        let _ = writeln!(out, "      {}:{sep}{note}", f.field.path());
        let before = lines(f.before.as_ref());
        let after = lines(f.after.as_ref());
        let before: Vec<&str> = before.iter().map(String::as_str).collect();
        let after: Vec<&str> = after.iter().map(String::as_str).collect();
        for change in TextDiff::from_slices(&before, &after).iter_all_changes() {
            let (sign, st) = match change.tag() {
                ChangeTag::Delete => ("-", style::DELETE),
                ChangeTag::Insert => ("+", style::CREATE),
                ChangeTag::Equal => (" ", style::DIM),
            };
            let _ = writeln!(out, "        {st}{sign} {}{st:#}", change.value());
        }
    } else {
        let sep = if note.is_empty() { "" } else { "  " };
        let (before, after) = (scalar(f.before.as_ref()), scalar(f.after.as_ref()));
        let _ = writeln!(
            out,
            "      {}: {before} → {after}{sep}{note}",
            f.field.path()
        );
    }
}

/// A list value's lines, escaped for the terminal.
fn lines(v: Option<&Value>) -> Vec<String> {
    let esc = |s: &String| crate::diagnostic::escaped(s).into_owned();
    match v {
        Some(Value::List(items)) => items.iter().map(esc).collect(),
        Some(Value::Text(t)) => vec![esc(t)],
        None => Vec::new(),
    }
}

/// A one-line value, quoted and escaped for the terminal (`Debug` quotes
/// and escapes controls; format characters are escaped after it).
fn scalar(v: Option<&Value>) -> String {
    let text = match v {
        Some(Value::Text(t)) => format!("{t:?}"),
        Some(Value::List(items)) => format!("{items:?}"),
        None => return "(unset)".into(),
    };
    crate::diagnostic::escaped(&text).into_owned()
}
