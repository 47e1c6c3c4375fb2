//! Table tests for every action and reason, and snapshots of the rendering.

use std::path::Path;

use chrono::{DateTime, Duration, TimeZone as _, Utc};

use super::*;
use crate::config::{self, Config};
use crate::state::crypto::Sealed;
use crate::state::{AssetRecord, SmtpCheck, State, TokenRecord};

const BASE: &str = r#"version = 1
[providers.lab]
authorization_url = "https://idp.example/authorize"
token_url = "https://idp.example/token"
revocation_url = "https://idp.example/revoke"
client_id = "mailform"
scopes = ["mail", "offline_access"]
smtp = { host = "smtp.example", port = 587, security = "starttls" }

[assets.support]
email = "support@example.com"
provider = "lab"
labels = { team = "care" }
"#;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
}

fn config(text: &str) -> Config {
    let loaded = config::parse(Path::new("assets.toml"), text.to_string());
    assert!(!loaded.diagnostics.has_errors(), "{:?}", loaded.diagnostics);
    loaded.config.expect("fixture config is valid")
}

fn token() -> TokenRecord {
    TokenRecord {
        sealed: Sealed {
            nonce: String::new(),
            ciphertext: String::new(),
        },
        has_refresh_token: true,
        granted_scopes: vec!["mail".into(), "offline_access".into()],
        obtained_at: now() - Duration::days(1),
        access_expires_at: Some(now() - Duration::minutes(5)),
        refresh_expires_at: None,
        revoked: None,
    }
}

/// State that matches `text` exactly, with good tokens.
fn state_for(text: &str) -> State {
    let c = config(text);
    let mut state = State::new();
    state.serial = 7;
    for asset in c.assets.values() {
        state.assets.insert(
            asset.name.clone(),
            AssetRecord::new(super::applied(&c, asset), Some(token()), now()),
        );
    }
    state
}

fn record_of(state: &mut State) -> &mut AssetRecord {
    state
        .assets
        .get_mut("support")
        .expect("the fixture applies `support`")
}

fn token_of(state: &mut State) -> &mut TokenRecord {
    record_of(state)
        .token
        .as_mut()
        .expect("the fixture has tokens")
}

fn plan_of(text: &str, state: &State, obs: &Observations) -> Plan {
    plan(&config(text), Some(state), obs, now(), &[])
}

fn only(plan: &Plan) -> &Change {
    assert_eq!(plan.changes.len(), 1, "{plan:#?}");
    &plan.changes[0]
}

fn observe(token: Option<TokenObservation>, smtp: Option<SmtpObservation>) -> Observations {
    Observations {
        assets: [(
            "support".to_string(),
            AssetObservation {
                token,
                smtp,
                imap: None,
                forwarding: None,
            },
        )]
        .into(),
        live: true,
    }
}

#[test]
fn create_when_not_in_state() {
    let p = plan(&config(BASE), None, &Observations::default(), now(), &[]);
    let c = only(&p);
    assert_eq!(c.action, Action::Create);
    assert_eq!(c.reasons, vec![Reason::NotInState]);
    assert_eq!(p.lineage, None);
    assert!(!p.is_empty());
}

#[test]
fn no_op_when_state_matches_and_tokens_are_fine() {
    let state = state_for(BASE);
    let p = plan_of(BASE, &state, &Observations::default());
    assert_eq!(only(&p).action, Action::NoOp);
    assert!(only(&p).reasons.is_empty());
    assert!(p.is_empty());
    assert_eq!((p.lineage, p.serial), (Some(state.lineage), 7));
    assert!(!p.live);
}

#[test]
fn delete_when_not_in_config() {
    let mut state = state_for(BASE);
    let mut old = state.assets["support"].clone();
    old.applied.email = "old@example.com".into();
    state.assets.insert("old".into(), old);
    let p = plan_of(BASE, &state, &Observations::default());
    let c = p.changes.iter().find(|c| c.asset == "old").unwrap();
    assert_eq!(
        (c.action, c.reasons.clone()),
        (Action::Delete, vec![Reason::NotInConfig])
    );
    assert_eq!(c.email, "old@example.com");
    assert_eq!(
        p.summary,
        Summary {
            delete: 1,
            no_op: 1,
            ..Summary::default()
        }
    );
}

#[test]
fn delete_warns_when_the_provider_cannot_revoke() {
    let mut state = state_for(BASE);
    let mut old = state.assets["support"].clone();
    old.applied.revocation_url = None;
    state.assets.insert("old".into(), old);
    let p = plan_of(BASE, &state, &Observations::default());
    let c = p.changes.iter().find(|c| c.asset == "old").unwrap();
    assert!(
        c.warnings[0].contains("no revocation endpoint"),
        "{:?}",
        c.warnings
    );
}

#[test]
fn update_when_labels_change() {
    let state = state_for(BASE);
    let p = plan_of(
        &BASE.replace("team = \"care\"", "team = \"billing\""),
        &state,
        &Observations::default(),
    );
    let c = only(&p);
    assert_eq!(c.action, Action::Update);
    assert_eq!(
        c.reasons,
        vec![Reason::FieldsChanged {
            fields: vec![Field::Labels]
        }]
    );
    assert!(!c.fields[0].forces_reconsent);
}

#[test]
fn update_when_smtp_port_changes() {
    let state = state_for(BASE);
    let text = BASE.replace(
        "port = 587, security = \"starttls\"",
        "port = 465, security = \"tls\"",
    );
    let c = only(&plan_of(&text, &state, &Observations::default())).clone();
    assert_eq!(c.action, Action::Update);
    let fields: Vec<Field> = c.fields.iter().map(|f| f.field).collect();
    assert_eq!(fields, vec![Field::SmtpPort, Field::SmtpSecurity]);
    assert_eq!(c.fields[0].before, Some(Value::Text("587".into())));
    assert_eq!(c.fields[0].after, Some(Value::Text("465".into())));
}

#[test]
fn reconsent_when_token_missing() {
    let mut state = state_for(BASE);
    record_of(&mut state).token = None;
    let c = only(&plan_of(BASE, &state, &Observations::default())).clone();
    assert_eq!(
        (c.action, c.reasons),
        (Action::Reconsent, vec![Reason::TokenMissing])
    );
}

#[test]
fn reconsent_when_client_id_changes() {
    let state = state_for(BASE);
    let text = BASE.replace("client_id = \"mailform\"", "client_id = \"mailform-2\"");
    let c = only(&plan_of(&text, &state, &Observations::default())).clone();
    assert_eq!(c.action, Action::Reconsent);
    assert_eq!(
        c.reasons,
        vec![Reason::BindingChanged {
            fields: vec![Field::ClientId]
        }]
    );
    assert!(c.fields[0].forces_reconsent);
}

#[test]
fn reconsent_when_scopes_change_without_a_scope_shortfall_reason() {
    let state = state_for(BASE);
    let text = BASE.replace(
        "[\"mail\", \"offline_access\"]",
        "[\"mail\", \"mail.send\", \"offline_access\"]",
    );
    let c = only(&plan_of(&text, &state, &Observations::default())).clone();
    assert_eq!(c.action, Action::Reconsent);
    assert_eq!(
        c.reasons,
        vec![Reason::BindingChanged {
            fields: vec![Field::Scopes]
        }]
    );
}

#[test]
fn reconsent_when_binding_changes_alongside_other_fields() {
    let state = state_for(BASE);
    let text = BASE
        .replace("client_id = \"mailform\"", "client_id = \"x\"")
        .replace("\"care\"", "\"sales\"");
    let c = only(&plan_of(&text, &state, &Observations::default())).clone();
    assert_eq!(c.action, Action::Reconsent);
    assert_eq!(
        c.reasons,
        vec![
            Reason::BindingChanged {
                fields: vec![Field::ClientId]
            },
            Reason::FieldsChanged {
                fields: vec![Field::Labels]
            }
        ]
    );
}

#[test]
fn reconsent_when_the_fingerprint_scheme_moved() {
    let mut state = state_for(BASE);
    record_of(&mut state).binding = "from-an-older-mailform".into();
    let c = only(&plan_of(BASE, &state, &Observations::default())).clone();
    assert_eq!(c.reasons, vec![Reason::BindingChanged { fields: vec![] }]);
}

#[test]
fn reconsent_when_refresh_token_expired() {
    let mut state = state_for(BASE);
    let at = now() - Duration::hours(1);
    token_of(&mut state).refresh_expires_at = Some(at);
    let c = only(&plan_of(BASE, &state, &Observations::default())).clone();
    assert_eq!(
        (c.action, c.reasons),
        (Action::Reconsent, vec![Reason::TokenExpired { at }])
    );
}

#[test]
fn reconsent_when_access_expired_and_no_refresh_token() {
    let mut state = state_for(BASE);
    let t = token_of(&mut state);
    t.has_refresh_token = false;
    let at = t.access_expires_at.unwrap();
    let c = only(&plan_of(BASE, &state, &Observations::default())).clone();
    assert_eq!(
        (c.action, c.reasons),
        (Action::Reconsent, vec![Reason::TokenExpired { at }])
    );
}

#[test]
fn warns_when_no_refresh_token_but_access_still_valid() {
    let mut state = state_for(BASE);
    let t = token_of(&mut state);
    t.has_refresh_token = false;
    t.access_expires_at = Some(now() + Duration::minutes(30));
    let c = only(&plan_of(BASE, &state, &Observations::default())).clone();
    assert_eq!(c.action, Action::NoOp);
    assert!(
        c.warnings[0].contains("no refresh token"),
        "{:?}",
        c.warnings
    );
}

#[test]
fn reconsent_when_granted_scopes_fall_short() {
    let mut state = state_for(BASE);
    token_of(&mut state).granted_scopes = vec!["offline_access".into()];
    let c = only(&plan_of(BASE, &state, &Observations::default())).clone();
    assert_eq!(c.action, Action::Reconsent);
    assert_eq!(
        c.reasons,
        vec![Reason::ScopesShort {
            missing: vec!["mail".into()]
        }]
    );
}

#[test]
fn offline_access_need_not_be_echoed_back() {
    let mut state = state_for(BASE);
    token_of(&mut state).granted_scopes = vec!["mail".into()];
    assert_eq!(
        only(&plan_of(BASE, &state, &Observations::default())).action,
        Action::NoOp
    );
}

#[test]
fn reconsent_when_refresh_is_observed_revoked() {
    let state = state_for(BASE);
    let obs = observe(
        Some(TokenObservation::Revoked {
            error: "invalid_grant".into(),
            description: Some("grant request is invalid".into()),
        }),
        None,
    );
    let p = plan_of(BASE, &state, &obs);
    let c = only(&p);
    assert!(p.live);
    assert_eq!(c.action, Action::Reconsent);
    assert!(
        matches!(&c.reasons[0], Reason::TokenRevoked { error, .. } if error == "invalid_grant")
    );
}

#[test]
fn transient_failures_are_warnings_never_drift() {
    let state = state_for(BASE);
    let obs = observe(
        Some(TokenObservation::Transient {
            detail: "HTTP 503".into(),
        }),
        Some(SmtpObservation::Transient {
            detail: "timed out".into(),
        }),
    );
    let p = plan_of(BASE, &state, &obs);
    assert_eq!(only(&p).action, Action::NoOp);
    assert_eq!(only(&p).warnings.len(), 2);
    assert!(p.is_empty());
}

#[test]
fn observed_scopes_override_stored_ones() {
    let state = state_for(BASE);
    let obs = observe(
        Some(TokenObservation::Valid {
            granted_scopes: Some(vec!["other".into()]),
            access_expires_at: None,
        }),
        None,
    );
    let c = only(&plan_of(BASE, &state, &obs)).clone();
    assert_eq!(
        c.reasons,
        vec![Reason::ScopesShort {
            missing: vec!["mail".into()]
        }]
    );
}

#[test]
fn refused_smtp_login_is_an_update() {
    let state = state_for(BASE);
    let obs = observe(
        Some(TokenObservation::Valid {
            granted_scopes: None,
            access_expires_at: None,
        }),
        Some(SmtpObservation::Refused {
            server: "smtp.example:587".into(),
            reply: "535 5.7.8 Username and Password not accepted".into(),
            hint: None,
            reconsent: false,
        }),
    );
    let c = only(&plan_of(BASE, &state, &obs)).clone();
    assert_eq!(c.action, Action::Update);
    assert!(
        matches!(&c.reasons[0], Reason::SmtpLoginRefused { reply, checked_at: None, .. } if reply.starts_with("535"))
    );
}

#[test]
fn a_login_refused_as_another_accounts_forces_a_reconsent_a_live_check_can_clear() {
    let mut state = state_for(BASE);
    let refused = SmtpObservation::Refused {
        server: "smtp.example:587".into(),
        reply: "535 5.7.8 Username and Password not accepted".into(),
        hint: None,
        reconsent: true,
    };
    let c = only(&plan_of(
        BASE,
        &state,
        &observe(None, Some(refused.clone())),
    ))
    .clone();
    assert_eq!(c.action, Action::Reconsent);
    // Recorded, it stands offline; but it is the servers' word, not the
    // config's, so a saved live plan may disagree with it.
    record_of(&mut state).smtp_check = Some(refused.record("smtp.example:587", now()));
    let c = only(&plan_of(BASE, &state, &Observations::default())).clone();
    assert_eq!(c.action, Action::Reconsent);
    assert!(!c.reasons.iter().any(Reason::forces_reconsent_offline));
    let accepted = SmtpObservation::Accepted {
        server: "smtp.example:587".into(),
        reply: "235 2.7.0 Accepted".into(),
    };
    let c = only(&plan_of(BASE, &state, &observe(None, Some(accepted)))).clone();
    assert_eq!(c.action, Action::NoOp);
}

#[test]
fn a_recorded_refusal_stays_drift_until_a_check_passes() {
    let mut state = state_for(BASE);
    record_of(&mut state).smtp_check = Some(SmtpCheck {
        at: now(),
        ok: false,
        server: "smtp.example:587".into(),
        detail: "535 5.7.8 rejected".into(),
        hint: Some("consent again".into()),
        unproven: false,
        reconsent: false,
    });
    let c = only(&plan_of(BASE, &state, &Observations::default())).clone();
    assert_eq!(c.action, Action::Update);
    assert!(
        matches!(&c.reasons[0], Reason::SmtpLoginRefused { reply, checked_at: Some(_), .. } if reply.contains("535 5.7.8")),
        "{:?}",
        c.reasons
    );
    // A check that could not finish leaves the record standing.
    let obs = observe(
        None,
        Some(SmtpObservation::Transient {
            detail: "timeout".into(),
        }),
    );
    assert_eq!(only(&plan_of(BASE, &state, &obs)).action, Action::Update);
    // A refusal recorded for another server says nothing about this one.
    record_of(&mut state).smtp_check.as_mut().unwrap().server = "old.example:587".into();
    assert_eq!(
        only(&plan_of(BASE, &state, &Observations::default())).action,
        Action::NoOp
    );
    record_of(&mut state).smtp_check.as_mut().unwrap().server = "smtp.example:587".into();
    // A live check that passes outranks the record.
    let obs = observe(
        None,
        Some(SmtpObservation::Accepted {
            server: "smtp.example:587".into(),
            reply: "235 2.7.0 Accepted".into(),
        }),
    );
    assert_eq!(only(&plan_of(BASE, &state, &obs)).action, Action::NoOp);
}

#[test]
fn warns_days_before_the_refresh_token_expires() {
    let mut state = state_for(BASE);
    token_of(&mut state).refresh_expires_at = Some(now() + Duration::days(2) + Duration::hours(1));
    let c = only(&plan_of(BASE, &state, &Observations::default())).clone();
    assert_eq!(c.action, Action::NoOp);
    assert_eq!(
        c.warnings,
        vec![
            "refresh token expires in 2 days (2026-11-27 13:00 UTC); consent will be needed again"
        ]
    );
}

#[test]
fn create_warns_when_the_app_is_in_testing() {
    let text = r#"version = 1
[providers.google]
client_id = "1.apps.googleusercontent.com"
client_secret = { env = "X" }
[providers.google.console]
user_type = "external"
publishing_status = "testing"
test_users = ["support@example.com"]
[assets.support]
email = "support@example.com"
provider = "google"
"#;
    let p = plan(&config(text), None, &Observations::default(), now(), &[]);
    assert!(
        only(&p).warnings[0].contains("expire 7 days after consent"),
        "{:?}",
        only(&p).warnings
    );
}

#[test]
fn targets_limit_the_plan() {
    let text =
        format!("{BASE}\n[assets.billing]\nemail = \"billing@example.com\"\nprovider = \"lab\"\n");
    let p = plan(
        &config(&text),
        None,
        &Observations::default(),
        now(),
        &["billing".into()],
    );
    assert_eq!(only(&p).asset, "billing");
    assert_eq!(p.targets, vec!["billing"]);
}

fn strip(s: &str) -> String {
    anstream::adapter::strip_str(s).to_string()
}

#[test]
fn human_rendering_of_every_action() {
    let text = format!(
        "{}\n[assets.billing]\nemail = \"billing@example.com\"\nprovider = \"lab\"\n\n[assets.sales]\nemail = \"sales@example.com\"\nprovider = \"lab\"\nscopes = [\"mail\", \"mail.send\", \"offline_access\"]\n\n[assets.new]\nemail = \"new@example.com\"\nprovider = \"lab\"\n",
        BASE.replace("team = \"care\"", "team = \"care\", tier = \"1\"")
    );
    let mut state = state_for(&format!(
        "{BASE}\n[assets.billing]\nemail = \"billing@example.com\"\nprovider = \"lab\"\nsmtp = {{ port = 465, security = \"tls\" }}\n\n[assets.sales]\nemail = \"sales@example.com\"\nprovider = \"lab\"\n\n[assets.gone]\nemail = \"gone@example.com\"\nprovider = \"lab\"\n"
    ));
    token_of(&mut state).refresh_expires_at = Some(now() + Duration::days(3));
    let p = plan(
        &config(&text),
        Some(&state),
        &Observations::default(),
        now(),
        &[],
    );
    insta::assert_snapshot!(strip(&crate::render::plan::human(&p)));
}

#[test]
fn human_rendering_without_changes() {
    let state = state_for(BASE);
    let p = plan_of(BASE, &state, &Observations::default());
    insta::assert_snapshot!(strip(&crate::render::plan::human(&p)));
}

#[test]
fn human_rendering_of_a_revoked_grant() {
    let state = state_for(BASE);
    let obs = observe(
        Some(TokenObservation::Revoked {
            error: "invalid_grant".into(),
            description: None,
        }),
        None,
    );
    insta::assert_snapshot!(strip(&crate::render::plan::human(&plan_of(
        BASE, &state, &obs
    ))));
}

#[test]
fn a_saved_plan_reads_back_and_reconsent_is_forced() {
    let state = state_for(BASE);
    let mut plan = plan_of(BASE, &state, &Observations::default());
    let text = serde_json::to_vec(&plan).unwrap();
    assert_eq!(Plan::read_saved(&text).unwrap(), plan);
    plan.force_reconsent(&["support".to_string()]);
    assert_eq!(plan.changes[0].action, Action::Reconsent);
    assert_eq!(plan.changes[0].reasons, vec![Reason::ReconsentRequested]);
    assert_eq!(plan.summary.reconsent, 1);
    assert_eq!(plan.summary.no_op, 0);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 1000, failure_persistence: None, ..Default::default() })]

    /// A saved plan cut short, bytes flipped or spliced: read back or
    /// refused with a reason, never a panic, and never quoting the file.
    #[test]
    fn hostile_saved_plans_are_refused_without_panic(
        cut in 0usize..4000,
        flips in proptest::collection::vec((0usize..4000, proptest::num::u8::ANY), 0..6),
        junk in proptest::string::string_regex("(?s).{0,40}").unwrap(),
    ) {
        let state = state_for(BASE);
        let plan = plan_of(BASE, &state, &Observations::default());
        let mut bytes = serde_json::to_vec_pretty(&plan).unwrap();
        for (at, b) in flips {
            if !bytes.is_empty() {
                let at = at % bytes.len();
                bytes[at] = b;
            }
        }
        bytes.truncate(cut.min(bytes.len()));
        bytes.extend_from_slice(junk.as_bytes());
        if let Err(why) = Plan::read_saved(&bytes) {
            proptest::prop_assert!(!why.is_empty());
            proptest::prop_assert!(!why.chars().any(char::is_control));
        }
    }
}

/// BASE with IMAP and forwarding read through a Gmail API.
const INBOUND: &str = r#"version = 1
[providers.lab]
authorization_url = "https://idp.example/authorize"
token_url = "https://idp.example/token"
client_id = "mailform"
scopes = ["mail", "offline_access"]
smtp = { host = "smtp.example", port = 587, security = "starttls" }
imap = { host = "imap.example", port = 993, security = "tls" }
gmail_api_url = "https://gmail.example"

[assets.support]
email = "support@example.com"
provider = "lab"
forwarding_address = "cc@contact.example"
"#;

fn inbound(
    imap: Option<SmtpObservation>,
    forwarding: Option<ForwardingObservation>,
) -> Observations {
    Observations {
        assets: [(
            "support".to_string(),
            AssetObservation {
                token: None,
                smtp: None,
                imap,
                forwarding,
            },
        )]
        .into(),
        live: true,
    }
}

#[test]
fn an_imap_refusal_is_drift_live_and_from_state_until_a_check_passes() {
    let mut state = state_for(INBOUND);
    let refused = SmtpObservation::Refused {
        server: "imap.example:993".into(),
        reply: "NO [AUTHENTICATIONFAILED] Authentication failed.".into(),
        hint: None,
        reconsent: false,
    };
    let c = only(&plan_of(
        INBOUND,
        &state,
        &inbound(Some(refused.clone()), None),
    ))
    .clone();
    assert_eq!(c.action, Action::Update);
    assert!(matches!(
        &c.reasons[0],
        Reason::ImapLoginRefused {
            checked_at: None,
            ..
        }
    ));
    record_of(&mut state).imap_check = Some(refused.record("imap.example:993", now()));
    let c = only(&plan_of(INBOUND, &state, &Observations::default())).clone();
    assert!(matches!(
        &c.reasons[0],
        Reason::ImapLoginRefused {
            checked_at: Some(_),
            ..
        }
    ));
    // A check at another server (the endpoint moved) says nothing of it.
    record_of(&mut state).imap_check.as_mut().unwrap().server = "old.example:993".into();
    assert_eq!(
        only(&plan_of(INBOUND, &state, &Observations::default())).action,
        Action::NoOp
    );
    // Not tried to the end: unproven, in its own words.
    let unproven = SmtpObservation::Transient {
        detail: "no answer".into(),
    };
    record_of(&mut state).imap_check = Some(unproven.record("imap.example:993", now()));
    let c = only(&plan_of(INBOUND, &state, &Observations::default())).clone();
    assert!(matches!(&c.reasons[0], Reason::ImapNotProven { .. }));
    let accepted = SmtpObservation::Accepted {
        server: "imap.example:993".into(),
        reply: "OK Logged in".into(),
    };
    assert_eq!(
        only(&plan_of(INBOUND, &state, &inbound(Some(accepted), None))).action,
        Action::NoOp
    );
}

#[test]
fn forwarding_drift_is_read_live_replayed_from_state_and_never_from_a_passing_failure() {
    let mut state = state_for(INBOUND);
    let off = ForwardingObservation::Seen {
        enabled: false,
        email_address: None,
        disposition: None,
        addresses: vec![("cc@contact.example".into(), "accepted".into())],
    };
    let c = only(&plan_of(INBOUND, &state, &inbound(None, Some(off)))).clone();
    assert_eq!(c.action, Action::Update);
    assert!(
        matches!(&c.reasons[..], [Reason::ForwardingDrift { what, checked_at: None, .. }] if what == "forwarding is off")
    );
    // As live checks record it: offline, the same drift, dated.
    record_of(&mut state).forwarding_check = Some(SmtpCheck {
        at: now(),
        ok: false,
        server: "https://gmail.example/".into(),
        detail: "forwarding is off\nmail is forwarded elsewhere".into(),
        hint: Some("turn it on\npoint it back".into()),
        unproven: false,
        reconsent: false,
    });
    let c = only(&plan_of(INBOUND, &state, &Observations::default())).clone();
    assert_eq!(c.reasons.len(), 2, "{:?}", c.reasons);
    assert!(
        matches!(&c.reasons[1], Reason::ForwardingDrift { what, hint, checked_at: Some(_) } if what == "mail is forwarded elsewhere" && hint == "point it back")
    );
    // A passing failure of the API keeps the recorded drift, with a warning.
    let busy = ForwardingObservation::Transient {
        detail: "503".into(),
    };
    let c = only(&plan_of(INBOUND, &state, &inbound(None, Some(busy)))).clone();
    assert_eq!(c.reasons.len(), 2);
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("could not be read now"))
    );
    // Read right: no drift.
    let right = ForwardingObservation::Seen {
        enabled: true,
        email_address: Some("cc@contact.example".into()),
        disposition: Some("leaveInInbox".into()),
        addresses: vec![("cc@contact.example".into(), "accepted".into())],
    };
    assert_eq!(
        only(&plan_of(INBOUND, &state, &inbound(None, Some(right)))).action,
        Action::NoOp
    );
}
