//! `mailform send-test NAME --to ADDR`: a real, small, well-formed message
//! (Date, Message-ID, From = the asset's email) through the same login path
//! as the proof; the server's reply to the message (its queue id) on stdout.
//!
//! The access token is the one `mailform token` would print; when the
//! server refuses it and a refresh token is stored, a fresh one is tried once
//! (an access token can be revoked or expire early).

use lettre::message::{Mailbox, Message, header::ContentType};

use super::{Context, ExitStatus};
use crate::error::Error;
use crate::plan::SmtpObservation;
use crate::smtp::{self, Endpoint, Sent};

pub fn run(
    ctx: &Context<'_>,
    name: &str,
    to: Option<&str>,
    subject: Option<&str>,
    round_trip: Option<std::time::Duration>,
) -> Result<ExitStatus, Error> {
    let (config, settings) = ctx.config()?;
    // The round trip goes to the asset's own address, and needs IMAP to
    // see it arrive.
    let own;
    let to = if let Some(to) = to {
        to
    } else {
        super::known_asset(name, config.assets.keys().map(String::as_str), &config)?;
        if config.assets[name].imap.is_none() {
            return Err(Error::Usage(format!(
                "{name}: a round trip cannot observe arrival: the asset declares no IMAP (imap = true, or imap = {{ host, port, security }})"
            )));
        }
        own = config.assets[name].email.clone();
        own.as_str()
    };
    let to: Mailbox = to.parse().map_err(|e| {
        Error::Usage(format!(
            "invalid --to `{}`: {e} (write an address like someone@example.com)",
            crate::diagnostic::shown(to)
        ))
    })?;
    // The token, and its record as stored: what was granted (for hints),
    // and whether a refresh can mint another token.
    let boxed = Context::store(&config)?;
    let access = crate::observe::Access {
        config: &config,
        store: &*boxed,
        lock: &|store, timeout| ctx.lock(store, "token", timeout),
        lock_timeout: settings.lock_timeout,
    };
    let (token, record, applied) = crate::observe::access_token(&access, name, false)?;
    let asset = &config.assets[name];
    let granted = record.granted_scopes.clone();
    // Sent where the last apply proved the login, never where an unapplied
    // edit points (a token goes to a new server only after apply).
    let moved = crate::observe::moved_endpoint(&config, name, &applied);
    let probe = crate::observe::Endpoints::default()
        .applied_probe(&config, asset, &applied, &granted, settings.smtp_timeout)
        .map_err(|why| Error::Usage(format!("{name}: {why}")))?
        .ok_or_else(|| Error::Usage(format!("{name}: {}", moved.clone().unwrap_or_default())))?;
    if let Some(moved) = &moved {
        ctx.printer.err(&format!(
            "note: {name}: {moved}; sending through the proven one\n"
        ))?;
    }
    let endpoint = &*probe.endpoint;
    let message = test_message(name, asset, endpoint, to.clone(), subject)?;
    let envelope = message.envelope().clone();
    let message_id = message
        .headers()
        .get_raw("Message-ID")
        .ok_or_else(|| Error::Usage(format!("{name}: the test message has no Message-ID")))?
        .to_string();
    let bytes = message.formatted();

    let runtime = super::runtime()?;
    let send = |token: &crate::secret::Secret| {
        runtime.block_on(smtp::send(
            endpoint,
            &asset.username,
            token,
            &envelope,
            &bytes,
            settings.smtp_timeout,
        ))
    };
    let mut result = send(&token);
    let mut round_token = token.clone();
    if matches!(&result, Ok(Sent::LoginRefused(o)) if o.fresh_token_may_help())
        && (record.has_refresh_token || config.provider_of(asset).grant.is_organisation())
    {
        let (fresh, _, _) = crate::observe::access_token(&access, name, true)?;
        result = send(&fresh);
        round_token = fresh;
    }
    match result {
        Ok(Sent::Accepted(reply)) => {
            ctx.printer.err(&format!(
                "Sent a test message from {} to {} through {}; the server answered:\n",
                asset.email,
                to.email,
                endpoint.server()
            ))?;
            ctx.printer.out(&format!("{reply}\n"))?;
            match round_trip {
                None => Ok(ExitStatus::Success),
                Some(wait) => {
                    let imap = crate::observe::ImapProbe::applied(
                        &mut crate::observe::Endpoints::default(),
                        &config,
                        asset,
                        &applied,
                        settings.smtp_timeout,
                    )
                    .map_err(|why| Error::Usage(format!("{name}: {why}")))?
                    .ok_or_else(|| {
                        Error::Usage(format!(
                            "{name}: its IMAP endpoint is not applied yet (or its trust changed): run mailform apply"
                        ))
                    })?;
                    arrival(ctx, name, &imap, &round_token, &message_id, wait)
                }
            }
        }
        Ok(Sent::LoginRefused(outcome)) => match probe.observation(&outcome) {
            SmtpObservation::Refused {
                server,
                reply,
                hint,
                ..
            } => Err(Error::SmtpRefused {
                name: name.to_string(),
                server,
                reply,
                hint,
            }),
            _ => unreachable!("a refused login is observed as refused"),
        },
        Err(e) => Err(Error::Network {
            name: name.to_string(),
            why: e.to_string(),
        }),
    }
}

/// Waits until the asset's IMAP login sees the message, and says what
/// both servers said and how long it took.
fn arrival(
    ctx: &Context<'_>,
    name: &str,
    imap: &crate::observe::ImapProbe,
    token: &crate::secret::Secret,
    message_id: &str,
    wait: std::time::Duration,
) -> Result<ExitStatus, Error> {
    let runtime = super::runtime()?;
    let server = imap.endpoint.server();
    let seen = runtime
        .block_on(crate::imap::wait_for(
            &imap.endpoint,
            &imap.username,
            token,
            imap.timeout,
            message_id,
            wait,
        ))
        .map_err(|e| Error::Network {
            name: name.to_string(),
            why: e.to_string(),
        })?;
    match (&seen.login, seen.after) {
        (crate::imap::Outcome::Accepted(words), Some(after)) => {
            ctx.printer.err(&format!(
                "{server} ({words}) sees it in INBOX after {:.1} s.\n",
                after.as_secs_f64()
            ))?;
            Ok(ExitStatus::Success)
        }
        (crate::imap::Outcome::Accepted(words), None) => Err(Error::Network {
            name: name.to_string(),
            why: format!(
                "{server} ({words}) did not see the message {message_id} in INBOX within {}: it was sent, but not (yet) delivered",
                humantime::format_duration(wait)
            ),
        }),
        (refused, _) => Err(Error::Network {
            name: name.to_string(),
            why: format!(
                "the message was sent, but {server} refused the IMAP login — {}",
                refused.words()
            ),
        }),
    }
}

/// The test message: Date, Message-ID on the asset's domain, From = the
/// asset's email. The subject is given to lettre's header encoding, so a
/// line break in it cannot start a header of its own.
fn test_message(
    name: &str,
    asset: &crate::config::Asset,
    endpoint: &Endpoint,
    to: Mailbox,
    subject: Option<&str>,
) -> Result<Message, Error> {
    let from: Mailbox = asset.email.parse().map_err(|e| {
        Error::Usage(format!(
            "{name}: email `{}` is not an address: {e}",
            asset.email
        ))
    })?;
    let domain = asset.email.rsplit('@').next().unwrap_or("mailform.invalid");
    let subject = subject.map_or_else(
        || format!("mailform test message from {name}"),
        ToString::to_string,
    );
    let message = Message::builder()
        .from(from)
        .to(to)
        .subject(subject)
        .date_now()
        .message_id(Some(format!("<{}@{domain}>", uuid::Uuid::new_v4())))
        .user_agent(concat!("mailform/", env!("CARGO_PKG_VERSION")).to_string())
        .header(ContentType::TEXT_PLAIN)
        .body(format!(
            "This is a test message from mailform send-test.\r\n\r\nIt was sent by the email asset `{name}` ({}) through {} ({}), logged in as {} with OAuth 2.0 (XOAUTH2).\r\n",
            asset.email,
            endpoint.server(),
            endpoint.security,
            asset.username
        ))
        .map_err(|e| Error::Usage(format!("{name}: cannot build the test message: {e}")))?;
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_cannot_add_headers() {
        let asset = crate::config::Asset {
            name: "support".into(),
            email: "support@example.com".into(),
            username: "support@example.com".into(),
            provider: "lab".into(),
            scopes: vec![],
            smtp: crate::config::SmtpEndpoint {
                host: "127.0.0.1".into(),
                port: 587,
                security: crate::security::Security::Starttls,
                port_span: None,
                security_span: None,
            },
            imap: None,
            forwarding_address: None,
            forwarding_disposition: None,
            consent_as: None,
            labels: std::collections::BTreeMap::new(),
            email_span: None,
            scopes_span: None,
            smtp_own_span: None,
        };
        let endpoint = Endpoint::new(
            "127.0.0.1",
            587,
            crate::security::Security::Starttls,
            "lab",
            None,
        )
        .unwrap();
        let to: Mailbox = "bob@example.com".parse().unwrap();
        let m = test_message(
            "support",
            &asset,
            &endpoint,
            to,
            Some("hello\r\nBcc: evil@example.net\r\n\r\nbody"),
        )
        .unwrap();
        let text = String::from_utf8(m.formatted()).unwrap();
        let headers = text.split("\r\n\r\n").next().unwrap();
        assert!(!headers.contains("\r\nBcc:"), "{headers}");
        assert!(
            headers.contains("From: support@example.com\r\n"),
            "{headers}"
        );
        assert!(headers.contains("\r\nMessage-ID: <"), "{headers}");
        assert!(m.envelope().to().len() == 1);
    }
}
