//! Consent: the flows that bring a person's grant (loopback, manual,
//! device, never), and the one place a new grant is checked — who gave it,
//! which scopes — and stored.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::Utc;

use super::{Run, action_of};
use crate::config::Asset;
use crate::config::raw::ConsentMode;
use crate::oauth::loopback::{self, Consent, Listener};
use crate::oauth::{Grant, TokenKind, Whose};
use crate::observe;
use crate::plan::{self, SmtpObservation};
use crate::state::{SmtpCheck, State};

/// How many answers `--consent manual` reads for one consent before it
/// gives up on a mis-paste.
const MANUAL_TRIES: usize = 3;

impl Run<'_> {
    pub(super) fn consent(
        &mut self,
        state: &mut State,
        names: &[String],
        mode: ConsentMode,
        timeout: std::time::Duration,
    ) {
        for name in names {
            self.begin(name);
        }
        match mode {
            ConsentMode::Loopback => self.loopback(state, names, timeout),
            ConsentMode::Never => {
                for name in names {
                    let action = action_of(state, name);
                    self.record(
                        name,
                        action,
                        Err(format!(
                            "consent required for {name}: run `mailform apply` where a person can consent (a terminal, or $BROWSER set; or `mailform apply --consent loopback`)"
                        )),
                    );
                }
            }
            ConsentMode::Manual => {
                let stdin = std::io::stdin();
                let mut input = stdin.lock();
                for name in names {
                    if crate::interrupt::requested() {
                        break;
                    }
                    let action = action_of(state, name);
                    let outcome = self
                        .manual(state, name, &mut input)
                        .map(|()| "consented; tokens stored".to_string());
                    self.record(name, action, outcome);
                }
            }
            ConsentMode::Device => {
                for name in names {
                    if crate::interrupt::requested() {
                        break;
                    }
                    let action = action_of(state, name);
                    let outcome = self
                        .device(state, name, timeout)
                        .map(|()| "consented; tokens stored".to_string());
                    self.record(name, action, outcome);
                }
            }
        }
    }

    /// `manual`: print the link, read back the address the browser ended on
    /// (or the bare code) from standard input.
    fn manual(
        &mut self,
        state: &mut State,
        name: &str,
        input: &mut dyn std::io::BufRead,
    ) -> Result<(), String> {
        let asset = &self.config.assets[name];
        let provider = self.config.provider_of(asset);
        let redirect = provider.redirect_uri.clone().ok_or_else(|| {
            format!(
                "provider `{}` has no redirect_uri to send the person back to",
                provider.name
            )
        })?;
        let client = self.client(&provider.name)?;
        let pending = client.authorization(&asset.scopes, asset.consenter(), &redirect);
        let _ = self.printer.err(&format!(
            "Consent for {name}: open this link signed in as {}, approve, then paste the address the browser ends on (it may not load; the address is what counts), or the code alone:\n  {}\npaste> ",
            asset.consenter(), pending.url
        ));
        // A mis-paste (another consent's address, an empty line) asks
        // again, a few times, rather than failing the asset.
        let mut refused: Option<String> = None;
        let mut tries = 0;
        let code = loop {
            let mut answer = zeroize::Zeroizing::new(String::new());
            let read = input
                .read_line(&mut answer)
                .map_err(|e| format!("cannot read the answer: {e}"))?;
            if read == 0 {
                return Err(refused.unwrap_or_else(|| "no answer on standard input".into()));
            }
            tries += 1;
            match loopback::pasted_code(&answer, &pending, name) {
                Ok(code) => break code,
                Err(e) if tries < MANUAL_TRIES => {
                    let _ = self.printer.err(&format!("That was not it: {e}.\npaste> "));
                    refused = Some(e.to_string());
                }
                Err(e) => return Err(e.to_string()),
            }
        };
        let grant = self
            .runtime
            .block_on(client.exchange(&pending, &code))
            .map_err(|e| e.to_string())?;
        self.store_grant(state, name, grant)
    }

    /// `device` (RFC 8628): show the code and where to enter it, open that
    /// page when `$BROWSER` is set, and wait for the person.
    fn device(
        &mut self,
        state: &mut State,
        name: &str,
        timeout: std::time::Duration,
    ) -> Result<(), String> {
        let asset = &self.config.assets[name];
        let provider = self.config.provider_of(asset);
        let client = self.client(&provider.name)?;
        let code = self
            .runtime
            .block_on(client.device_code(&asset.scopes))
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "provider `{}` has no device_authorization_url, so device consent is not possible; run `mailform apply --consent loopback` or `mailform apply --consent manual`",
                    provider.name
                )
            })?;
        let _ = self.printer.err(&format!(
            "Consent for {name}: signed in as {}, open {} and enter the code {}{}\n",
            asset.consenter(),
            crate::diagnostic::shown(code.verification_uri()),
            crate::diagnostic::shown(code.user_code()),
            code.verification_uri_complete()
                .map(|u| format!(" (or open {})", crate::diagnostic::shown(u)))
                .unwrap_or_default()
        ));
        let page = code
            .verification_uri_complete()
            .unwrap_or(code.verification_uri());
        // A page named by the network is opened only if it is https.
        if let Some(url) = url::Url::parse(page).ok().filter(|u| u.scheme() == "https")
            && let Err(why) = loopback::open_in_browser(&url)
        {
            let _ = self.printer.err(&format!("warning: {why}\n"));
        }
        // Polled until the person is done, the time is up, or a Ctrl-C.
        let grant = self.runtime.block_on(async {
            tokio::select! {
                r = client.device_token(&code, timeout) => r.map_err(|e| e.to_string()),
                () = async {
                    while !crate::interrupt::requested() {
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    }
                } => Err("interrupted before the consent arrived".to_string()),
            }
        })?;
        self.store_grant(state, name, grant)
    }

    fn loopback(&mut self, state: &mut State, names: &[String], timeout: std::time::Duration) {
        // One listener per redirect URI; most configs have one. Each is
        // bound before its links are made: a redirect URI without a port
        // (Google's Desktop clients register `http://localhost`) gets the
        // free port the listener found, in every link.
        let mut groups: BTreeMap<url::Url, Vec<String>> = BTreeMap::new();
        for name in names {
            let asset = &self.config.assets[name];
            let provider = self.config.provider_of(asset);
            let Some(redirect) = provider.redirect_uri.clone() else {
                let action = action_of(state, name);
                self.record(name, action, Err(format!("provider `{}` has no redirect_uri, so a loopback consent cannot come back; add e.g. redirect_uri = \"http://127.0.0.1:8765/callback\"", provider.name)));
                continue;
            };
            groups.entry(redirect).or_default().push(name.clone());
        }
        for (redirect, names) in groups {
            if crate::interrupt::requested() {
                break;
            }
            let listener = match Listener::bind(&redirect) {
                Ok(l) => l,
                Err(why) => {
                    for name in names {
                        let action = action_of(state, &name);
                        self.record(&name, action, Err(why.clone()));
                    }
                    continue;
                }
            };
            let mut consents = Vec::new();
            for name in names {
                let asset = &self.config.assets[&name];
                match self.client(&asset.provider) {
                    Ok(client) => {
                        let pending = client.authorization(
                            &asset.scopes,
                            asset.consenter(),
                            listener.redirect(),
                        );
                        consents.push(Consent {
                            asset: name.clone(),
                            email: asset.consenter().to_string(),
                            pending,
                            client,
                        });
                    }
                    Err(why) => {
                        let action = action_of(state, &name);
                        self.record(&name, action, Err(why));
                    }
                }
            }
            if consents.is_empty() {
                continue;
            }
            let mut list = format!(
                "Consent needed for {} mailbox{} (listening on {}{} for up to {}); each owner opens their own link:\n",
                consents.len(),
                if consents.len() == 1 { "" } else { "es" },
                listener.address(),
                if listener.port_chosen() {
                    ", a free port: the redirect URI names none"
                } else {
                    ""
                },
                humantime::format_duration(timeout)
            );
            for c in &consents {
                let _ = writeln!(list, "  {} ({}): {}", c.asset, c.email, c.pending.url);
            }
            let _ = self.printer.err(&list);
            for c in &consents {
                if let Err(why) = loopback::open_in_browser(&c.pending.url) {
                    let _ = self.printer.err(&format!("warning: {why}\n"));
                }
            }
            let runtime = self.runtime;
            // Each grant is stored before the next callback is read.
            listener.wait(consents, timeout, runtime, &mut |c, outcome| {
                let action = action_of(state, &c.asset);
                let outcome = match outcome {
                    Ok(grant) => self
                        .store_grant(state, &c.asset, grant)
                        .map(|()| "consented; tokens stored".to_string()),
                    Err(e) => Err(e.to_string()),
                };
                self.record(&c.asset, action, outcome);
            });
        }
    }

    /// Checks who consented and the granted scopes, seals the tokens and
    /// writes state at once. A grant given by another account than the one
    /// that should consent ([`Asset::consenter`]) is revoked and never
    /// stored: the ID token decides where there is one, else the SMTP login
    /// proven with the new token, before it replaces the stored grant.
    fn store_grant(&mut self, state: &mut State, name: &str, grant: Grant) -> Result<(), String> {
        let asset: &Asset = &self.config.assets[name];
        // RFC 6749 §5.1: no `scope` in the answer means as requested.
        let granted = grant.scopes.clone().unwrap_or_else(|| asset.scopes.clone());
        let missing = plan::missing_scopes(&asset.scopes, &granted);
        if !missing.is_empty() {
            return Err(format!(
                "the grant lacks {} (boxes left unticked at the consent screen?); run mailform apply again and approve every scope",
                missing.join(", ")
            ));
        }
        let expected = asset.consenter().to_string();
        let mut proven = None;
        match grant.whose(&expected) {
            Whose::Expected => {}
            Whose::Other(who) => {
                return Err(self.reject(
                    state,
                    name,
                    &grant,
                    &format!("consent was given as {who}, not {expected}"),
                ));
            }
            Whose::Untrustworthy(why) => {
                return Err(self.reject(
                    state,
                    name,
                    &grant,
                    &format!("the provider's answer does not show who consented ({why})"),
                ));
            }
            // No ID token, or one without an address: the SMTP login decides.
            Whose::Unknown => proven = self.identity_by_login(state, name, &grant)?,
        }
        let asset: &Asset = &self.config.assets[name];
        if grant.refresh_token.is_none() {
            let _ = self.printer.err(&format!(
                "warning: {name}: no refresh token was issued; mail stops when the access token expires (check offline access in the provider's settings)\n"
            ));
        }
        // What the old grant was, to settle it once the new one is stored.
        let old = self.stored(state, name);
        let applied = plan::applied(self.config, asset);
        let record = grant.insert_into(state, self.key, name, applied, granted, None);
        if let Some(check) = proven {
            record.smtp_check = Some(check);
            self.proven_at_consent.insert(name.to_string());
        }
        self.save(state, name)?;
        // The new grant is stored. The old one of the same client and the
        // same account is simply superseded (revoking it could end the new
        // one too, where a provider keeps one grant per user and client);
        // another account's is revoked; another client's cannot be revoked
        // with this client's credentials.
        if let Some((old, old_tokens)) = old {
            let now_applied = plan::applied(self.config, asset);
            if old.client_id != now_applied.client_id || old.token_url != now_applied.token_url {
                let _ = self.printer.err(&format!(
                    "note: {name}: the old grant was made for client {} and is not revoked by mailform; remove it in the provider's console\n",
                    crate::diagnostic::escaped(&old.client_id)
                ));
            } else if old.username != now_applied.username
                && let Err(why) = self.revoke_tokens(&old, &old_tokens)
            {
                let _ = self.printer.err(&format!(
                    "warning: {name}: the old account's grant could not be revoked: {why}\n"
                ));
            }
        }
        Ok(())
    }

    /// The SMTP login of a new grant that does not say who gave it, proven
    /// before the grant is stored: accepted, the check to record; refused as
    /// a token (another account's), the grant revoked; undecided (server
    /// unreachable, SMTP AUTH off) while a grant is stored, the new one is
    /// not stored, and not revoked either (it may be the same account's,
    /// and revoking it could end the stored grant with it). With nothing
    /// stored there is nothing to lose: the grant is stored, and apply's
    /// own proof reports the login.
    fn identity_by_login(
        &mut self,
        state: &State,
        name: &str,
        grant: &Grant,
    ) -> Result<Option<SmtpCheck>, String> {
        let asset = &self.config.assets[name];
        let expected = asset.consenter().to_string();
        let granted = grant.scopes.clone().unwrap_or_else(|| asset.scopes.clone());
        let result = observe::Endpoints::default()
            .probe(self.config, asset, &granted, self.smtp_timeout)
            .map_err(observe::Failure::Setup)
            .and_then(|probe| {
                self.runtime
                    .block_on(probe.run(&grant.access_token))
                    .map_err(observe::Failure::from)
            });
        let undecided = match result {
            Ok((_, seen @ SmtpObservation::Accepted { .. })) => {
                let check = seen.record("", Utc::now());
                let _ = self.printer.err(&format!(
                    "{name}: SMTP login proven by {} ({})\n",
                    check.server, check.detail
                ));
                return Ok(Some(check));
            }
            Ok((outcome, SmtpObservation::Refused { server, reply, .. }))
                if outcome.fresh_token_may_help() =>
            {
                return Err(self.reject(
                    state,
                    name,
                    grant,
                    &format!(
                        "{server} refused the new grant's login as {} — {reply}: it may be another account's (the provider sent no ID token to say who consented)",
                        asset.username
                    ),
                ));
            }
            Ok((_, SmtpObservation::Refused { reply, .. })) => reply,
            Ok((_, SmtpObservation::Transient { detail })) => detail,
            Err(e) => e.to_string(),
        };
        if self.stored(state, name).is_none() {
            return Ok(None);
        }
        Err(format!(
            "could not tell who consented: the provider sent no ID token, and the SMTP login could not be proven ({undecided}); the new grant was not stored and the stored one kept — run mailform apply --reconsent {name} again, signed in as {expected}, once the server answers"
        ))
    }

    /// Revokes a new grant that must not be stored (another account's, or
    /// one that cannot say whose it is), and says why, and what to do.
    fn reject(&mut self, state: &State, name: &str, grant: &Grant, why: &str) -> String {
        let expected = self.config.assets[name].consenter().to_string();
        let provider = self.config.assets[name].provider.clone();
        let revoked = self.client(&provider).and_then(|client| {
            let (token, kind) = match &grant.refresh_token {
                Some(r) => (r, TokenKind::Refresh),
                None => (&grant.access_token, TokenKind::Access),
            };
            self.runtime
                .block_on(client.revoke(token, kind))
                .map_err(|e| e.to_string())
        });
        let fate = match revoked {
            Ok(true) => "the new grant was revoked".to_string(),
            Ok(false) => "the new grant was not stored (the provider has no revocation endpoint: remove it in its console)".to_string(),
            Err(e) => format!("the new grant was not stored, and could not be revoked ({e}): remove it in the provider's console"),
        };
        let kept = if self.stored(state, name).is_some() {
            " and the stored one kept"
        } else {
            ""
        };
        format!("{why}: {fate}{kept} — consent again signed in as {expected}")
    }
}
