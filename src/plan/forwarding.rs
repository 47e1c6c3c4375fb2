//! Gmail's forwarding against the config: each difference a reason in
//! words, with the step that fixes it: by hand in Gmail's settings (a
//! person's grant may read them, not change them), or by `mailform apply`
//! where a service account may change them ([`apply_sets`]).

use super::ForwardingObservation;
use crate::config::presets::GMAIL_SETTINGS_SCOPE;
use crate::state::AppliedAsset;

/// Whether `mailform apply` sets the forwarding of an asset applied as
/// `applied`: a service account delegated Gmail's settings scope.
pub fn apply_sets(applied: &AppliedAsset) -> bool {
    applied.grant.as_deref() == Some("service_account")
        && applied.scopes.iter().any(|s| s == GMAIL_SETTINGS_SCOPE)
}

/// The step when `mailform apply` makes the change.
const APPLY_SETS: &str =
    "mailform apply sets it (the service account may change Gmail's forwarding settings)";

/// Where the settings live, for the steps.
const SETTINGS: &str = "Gmail → Settings → See all settings → Forwarding and POP/IMAP";

/// What differs between `want` (the forwarding address, and the
/// disposition when the config names one) and what Gmail said: (what,
/// what to do — `by_apply`: apply sets it, where it can). Empty: as
/// configured; `None`: nothing was learned.
pub fn findings(
    want: &str,
    disposition: Option<&str>,
    seen: &ForwardingObservation,
    by_apply: bool,
) -> Option<Vec<(String, String)>> {
    let mut found = read(want, disposition, seen)?;
    if by_apply {
        for (_, hint) in &mut found {
            if hint.starts_with(SETTINGS) {
                *hint = APPLY_SETS.to_string();
            }
        }
    }
    Some(found)
}

/// [`findings`], each with the step by hand.
fn read(
    want: &str,
    disposition: Option<&str>,
    seen: &ForwardingObservation,
) -> Option<Vec<(String, String)>> {
    let (enabled, email, have_disposition, addresses) = match seen {
        ForwardingObservation::Transient { .. } => return None,
        ForwardingObservation::Refused { code: 403, words }
            if words.starts_with("the Gmail API is disabled") =>
        {
            return Some(vec![(
                format!("the Gmail API refused to read the forwarding settings (403: {words})"),
                "enable the Gmail API in the OAuth client's Cloud project (APIs & Services → Library → Gmail API → Enable)".into(),
            )]);
        }
        ForwardingObservation::Refused { code: 0, words } => {
            return Some(vec![(
                format!("the Gmail API could not be reached safely ({words})"),
                "if the provider's gmail_api_url uses a private CA, set ca_file on the provider; otherwise check gmail_api_url".into(),
            )]);
        }
        ForwardingObservation::Refused { code, words } => {
            return Some(vec![(
                format!("the Gmail API refused to read the forwarding settings ({code}: {words})"),
                "check the provider's gmail_api_url and the grant's scopes (https://mail.google.com/ may read them)".into(),
            )]);
        }
        ForwardingObservation::Seen {
            enabled,
            email_address,
            disposition,
            addresses,
        } => (*enabled, email_address, disposition, addresses),
    };
    let is = |a: &str| a.eq_ignore_ascii_case(want);
    let mut out = Vec::new();
    match addresses.iter().find(|(a, _)| is(a)).map(|(_, s)| s.as_str()) {
        None => out.push((
            format!("{want} is not a forwarding address of the mailbox"),
            format!("{SETTINGS} → Add a forwarding address → {want}; then the contact center confirms the email Gmail sends it"),
        )),
        Some("accepted") => {}
        Some(_) => out.push((
            format!("{want} is not confirmed yet (pending)"),
            format!("Gmail sent a confirmation to {want}: whoever reads it — the contact center — must confirm it"),
        )),
    }
    if !enabled {
        out.push((
            "forwarding is off".into(),
            format!("{SETTINGS} → Forward a copy of incoming mail to {want} → Save Changes"),
        ));
    } else if !email.as_deref().is_some_and(is) {
        out.push((
            format!(
                "mail is forwarded to {}, not {want}",
                email.as_deref().unwrap_or("(no address)")
            ),
            format!("{SETTINGS} → Forward a copy of incoming mail to {want} → Save Changes"),
        ));
    }
    if let Some(want_d) = disposition
        && enabled
        && have_disposition.as_deref() != Some(want_d)
    {
        out.push((
            format!(
                "Gmail's copy of forwarded mail is {}, not {want_d}",
                have_disposition.as_deref().unwrap_or("(unset)")
            ),
            format!("{SETTINGS} → choose what happens to Gmail's copy → Save Changes"),
        ));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(enabled: bool, to: Option<&str>, status: &str) -> ForwardingObservation {
        ForwardingObservation::Seen {
            enabled,
            email_address: to.map(ToString::to_string),
            disposition: Some("leaveInInbox".into()),
            addresses: vec![("cc@contact.example".into(), status.into())],
        }
    }

    #[test]
    fn each_difference_is_one_finding() {
        let want = "cc@contact.example";
        assert_eq!(
            findings(want, None, &seen(true, Some(want), "accepted"), false),
            Some(vec![])
        );
        let off = findings(want, None, &seen(false, None, "accepted"), false).unwrap();
        assert_eq!(off.len(), 1);
        assert_eq!(off[0].0, "forwarding is off");
        let elsewhere = findings(
            want,
            None,
            &seen(true, Some("x@y.example"), "accepted"),
            false,
        )
        .unwrap();
        assert_eq!(
            elsewhere[0].0,
            "mail is forwarded to x@y.example, not cc@contact.example"
        );
        let pending = findings(want, None, &seen(true, Some(want), "pending"), false).unwrap();
        assert!(
            pending[0]
                .1
                .contains("the contact center — must confirm it")
        );
        let archive = findings(
            want,
            Some("archive"),
            &seen(true, Some(want), "accepted"),
            false,
        )
        .unwrap();
        assert_eq!(
            archive[0].0,
            "Gmail's copy of forwarded mail is leaveInInbox, not archive"
        );
        let missing = findings(
            "other@contact.example",
            None,
            &seen(false, None, "accepted"),
            false,
        )
        .unwrap();
        assert_eq!(missing.len(), 2);
        assert_eq!(
            findings(
                want,
                None,
                &ForwardingObservation::Transient { detail: "t".into() },
                false
            ),
            None
        );
    }

    #[test]
    fn where_apply_sets_it_the_step_says_so_but_a_confirmation_stays_a_persons() {
        let want = "cc@contact.example";
        let by_apply = findings(want, None, &seen(false, None, "pending"), true).unwrap();
        assert!(by_apply[0].1.contains("must confirm it"), "{by_apply:?}");
        assert_eq!(by_apply[1].1, APPLY_SETS);
    }
}
