//! What to do about a refused login, for the replies operators actually get.
//!
//! A small table, read top to bottom; the first row that matches speaks. To
//! add a provider's reply, add a row and a test with the reply's exact words.

use super::reply::{Challenge, Reply};

/// What is known about the login that was refused.
#[derive(Debug, Clone, Copy)]
pub struct Login<'a> {
    pub asset: &'a str,
    pub username: &'a str,
    /// The scopes the token was granted.
    pub granted: &'a [String],
    /// The app's client id, when the token is an organisation grant's
    /// (no person's account: the mailbox must be granted to the app).
    pub app_client: Option<&'a str>,
}

/// One row: a reply it recognises (the comment above it says which), and
/// what it tells the operator.
struct Row {
    matches: fn(&Reply, Option<&Challenge>, &Login<'_>) -> bool,
    say: fn(&Reply, Option<&Challenge>, &Login<'_>) -> String,
    /// Whether a new consent is the fix (the token is another account's),
    /// so the planner asks for one instead of trying the same grant again.
    consent_fixes: bool,
}

/// What the table says of a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advice {
    /// What to do, in words.
    pub hint: String,
    /// Whether a new consent (by the right account) is the fix.
    pub consent_fixes: bool,
}

fn has(reply: &Reply, words: &str) -> bool {
    reply
        .text
        .to_ascii_lowercase()
        .contains(&words.to_ascii_lowercase())
}

fn enhanced(reply: &Reply, code: &str) -> bool {
    reply.enhanced() == Some(code) || reply.text.contains(&format!(" {code} "))
}

/// Microsoft 365's "SMTP AUTH is disabled" (5.7.139): no token can help.
pub fn auth_disabled(reply: &Reply) -> bool {
    enhanced(reply, "5.7.139") || has(reply, "SmtpClientAuthentication is disabled")
}

/// The scopes the server asked for that the grant has none of.
fn scope_missing(challenge: Option<&Challenge>, login: &Login<'_>) -> Option<String> {
    let wanted = challenge?.scopes();
    (!wanted.is_empty() && !wanted.iter().any(|w| login.granted.iter().any(|g| g == w)))
        .then(|| wanted.join(" or "))
}

const TABLE: &[Row] = &[
    // an app's token refused for the mailbox (Microsoft: 535 5.7.3; Gmail: 5.7.8)
    Row {
        matches: |r, _, l| l.app_client.is_some() && r.code == 535 && !auth_disabled(r),
        say: |_, _, l| {
            format!(
                "the mailbox {} is not granted to the app (client {}): in Microsoft 365, Add-MailboxPermission -Identity {} -User <the app's service principal> -AccessRights FullAccess; in Google Workspace, check the service account's domain-wide delegation and that the mailbox is in the domain",
                l.username,
                l.app_client.unwrap_or_default(),
                l.username
            )
        },
        consent_fixes: false,
    },
    // the token lacks the scope the server asks for (its 334 challenge names it)
    Row {
        matches: |_, c, l| scope_missing(c, l).is_some(),
        say: |_, c, l| {
            format!(
                "the grant has no scope the server accepts for SMTP (it asks for {}): add it to the scopes of `{}` (or its provider), then run mailform apply to consent again",
                scope_missing(c, l).unwrap_or_default(),
                l.asset
            )
        },
        consent_fixes: false,
    },
    // Microsoft 365: 535 5.7.139 ... SmtpClientAuthentication is disabled
    Row {
        matches: |r, _, _| auth_disabled(r),
        say: |_, _, l| {
            format!(
                "authenticated SMTP is disabled for this mailbox or its tenant: enable it (Microsoft 365 admin center → the user → Mail → Manage email apps → Authenticated SMTP; or Set-CASMailbox -Identity {} -SmtpClientAuthenticationDisabled $false, and for the tenant Set-TransportConfig -SmtpClientAuthenticationDisabled $false)",
                l.username
            )
        },
        consent_fixes: false,
    },
    // Microsoft 365: 5.7.3 / 5.7.57, the mailbox may not send
    Row {
        matches: |r, _, _| enhanced(r, "5.7.3") || enhanced(r, "5.7.57"),
        say: |_, _, l| {
            format!(
                "the mailbox {} is not licensed or not allowed to send: check that it has an Exchange Online licence, is not blocked from sign-in, and may send as itself",
                l.username
            )
        },
        consent_fixes: false,
    },
    // Gmail and others: 535 5.7.8 Username and Password not accepted
    Row {
        matches: |r, _, _| {
            enhanced(r, "5.7.8")
                || has(r, "Username and Password not accepted")
                || (r.code == 535 && r.enhanced().is_none())
        },
        say: |_, _, l| {
            format!(
                "the token's account (or scope) does not match username {}: was consent given while signed in as {}? If not, consent again signed in as that account",
                l.username, l.username
            )
        },
        consent_fixes: true,
    },
];

/// What to do about this refusal, when the table knows.
pub fn for_refusal(
    reply: &Reply,
    challenge: Option<&Challenge>,
    login: &Login<'_>,
) -> Option<Advice> {
    TABLE
        .iter()
        .find(|row| (row.matches)(reply, challenge, login))
        .map(|row| Advice {
            hint: (row.say)(reply, challenge, login),
            consent_fixes: row.consent_fixes,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(granted: &[&str]) -> (Vec<String>, &'static str) {
        (
            granted.iter().map(ToString::to_string).collect(),
            "support@example.com",
        )
    }

    fn advice(
        code: u16,
        text: &str,
        challenge: Option<&Challenge>,
        granted: &[&str],
    ) -> Option<Advice> {
        let (granted, username) = login(granted);
        let l = Login {
            asset: "support",
            username,
            granted: &granted,
            app_client: None,
        };
        for_refusal(&Reply::new(code, text, &[]), challenge, &l)
    }

    fn hint(code: u16, text: &str, challenge: Option<&Challenge>, granted: &[&str]) -> String {
        advice(code, text, challenge, granted)
            .map(|a| a.hint)
            .unwrap_or_default()
    }

    #[test]
    fn only_another_accounts_token_is_fixed_by_a_new_consent() {
        let gmail = "5.7.8 Username and Password not accepted";
        let fixes = |text, challenge, granted: &[&str]| {
            advice(535, text, challenge, granted).is_some_and(|a| a.consent_fixes)
        };
        assert!(fixes(gmail, None, &["https://mail.google.com/"]));
        // A scope the config lacks: consent gives the same scopes again.
        let challenge = Challenge {
            status: Some("400".into()),
            scope: Some("https://mail.google.com/".into()),
            ..Challenge::default()
        };
        assert!(!fixes(gmail, Some(&challenge), &["openid"]));
        // SMTP AUTH off, a mailbox that may not send: no token helps.
        assert!(!fixes(
            "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.",
            None,
            &[]
        ));
        assert!(!fixes("5.7.3 Authentication unsuccessful", None, &[]));
    }

    #[test]
    fn gmail_wrong_account() {
        let h = hint(
            535,
            "5.7.8 Username and Password not accepted. For more information, go to https://support.google.com/mail/?p=BadCredentials",
            None,
            &["https://mail.google.com/"],
        );
        assert!(
            h.contains("was consent given while signed in as support@example.com?"),
            "{h}"
        );
    }

    #[test]
    fn a_scope_the_grant_lacks_is_named() {
        let challenge = Challenge {
            status: Some("400".into()),
            scope: Some("https://mail.google.com/".into()),
            ..Challenge::default()
        };
        let h = hint(
            535,
            "5.7.8 Username and Password not accepted",
            Some(&challenge),
            &["openid"],
        );
        assert!(h.contains("it asks for https://mail.google.com/"), "{h}");
        // With the scope granted, the same words point at the account.
        let h = hint(
            535,
            "5.7.8 Username and Password not accepted",
            Some(&challenge),
            &["https://mail.google.com/"],
        );
        assert!(h.contains("signed in as"), "{h}");
    }

    #[test]
    fn microsoft_smtp_auth_disabled() {
        let h = hint(
            535,
            "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. [AM0PR01CA0001.eurprd01.prod.exchangelabs.com]",
            None,
            &["https://outlook.office.com/SMTP.Send"],
        );
        assert!(h.contains("authenticated SMTP is disabled"), "{h}");
        assert!(
            h.contains("Set-CASMailbox -Identity support@example.com"),
            "{h}"
        );
    }

    #[test]
    fn microsoft_not_allowed_to_send() {
        for text in [
            "5.7.3 Authentication unsuccessful [BN9PR03CA0001.namprd03.prod.outlook.com]",
            "5.7.57 Client not authenticated to send mail",
        ] {
            let h = hint(535, text, None, &["https://outlook.office.com/SMTP.Send"]);
            assert!(
                h.contains("not licensed or not allowed to send"),
                "{text}: {h}"
            );
        }
    }

    #[test]
    fn unknown_replies_get_no_guess() {
        assert_eq!(hint(550, "5.1.1 no such user", None, &[]), "");
    }
}
