//! Organisation grants at apply: no person consents. Each asset's token is
//! asked for with the app's own credentials (in parallel, up to
//! `parallelism`), stored as it arrives, and proven like a consent's.

use std::sync::Arc;

use super::{Run, action_of};
use crate::oauth::ProviderClient;
use crate::plan;
use crate::render;
use crate::state::State;

/// Why no token came: the client could not be made, or the request failed.
enum Failed {
    Client(String),
    Request(crate::oauth::OAuthError),
}

impl Run<'_> {
    /// Obtains and stores a token for each of `names` (assets of an
    /// organisation grant). A refusal fails the asset with the admin step
    /// that fixes it; the stored grant, if any, stays.
    pub(super) fn app_grants(&mut self, state: &mut State, names: &[String]) {
        let mut jobs = Vec::new();
        for name in names {
            self.begin(name);
            let asset = &self.config.assets[name];
            let client = self.client(&asset.provider);
            jobs.push((
                name.clone(),
                client.map(|c| (c, asset.username.clone(), asset.scopes.clone())),
            ));
        }
        let progress = render::progress::tracker("requesting app tokens", jobs.len(), self.quiet);
        let request = |job: Result<(Arc<ProviderClient>, String, Vec<String>), String>| async move {
            if crate::interrupt::requested() {
                return None;
            }
            Some(match job {
                Ok((client, mailbox, scopes)) => client
                    .app_token(&mailbox, &scopes)
                    .await
                    .map_err(Failed::Request),
                Err(why) => Err(Failed::Client(why)),
            })
        };
        let runtime = self.runtime;
        runtime.block_on(crate::parallel::each(
            jobs,
            self.parallelism,
            progress,
            request,
            |name, answer| {
                let Some(answer) = answer else {
                    return false; // not started: interrupted
                };
                let action = action_of(state, &name);
                let asset = &self.config.assets[&name];
                let provider = self.config.provider_of(asset);
                let outcome = match answer {
                    Ok(grant) => {
                        // A person's grant this one replaces (the provider
                        // moved to an app grant) is settled, not dropped.
                        let old = self
                            .stored(state, &name)
                            .filter(|(applied, _)| applied.grant.is_none());
                        let granted = grant.scopes.clone().unwrap_or_else(|| asset.scopes.clone());
                        let applied = plan::applied(self.config, asset);
                        grant.insert_into(state, self.key, &name, applied, granted, None);
                        let saved = self.save(state, &name);
                        if saved.is_ok()
                            && let Some((old, tokens)) = old
                        {
                            self.settle_person_grant(&name, &old, &tokens);
                        }
                        saved.map(|()| {
                            "app grant: token obtained and stored (no consent)".to_string()
                        })
                    }
                    Err(Failed::Client(why)) => Err(why),
                    Err(Failed::Request(e)) => match e.refusal() {
                        Some((error, description)) => Err(format!(
                            "{} (apply cannot fix this: an administrator can)",
                            crate::config::grants::refused(provider, asset, error, description)
                        )),
                        None => Err(e.to_string()),
                    },
                };
                let ok = outcome.is_ok();
                self.record(&name, action, outcome);
                ok
            },
        ));
    }

    /// Revokes the person's grant an app grant replaced, or says where to
    /// remove it.
    fn settle_person_grant(
        &mut self,
        name: &str,
        old: &crate::state::AppliedAsset,
        tokens: &crate::state::Tokens,
    ) {
        let note = match self.revoke_tokens(old, tokens) {
            Ok(true) => return,
            Ok(false) => "is not revoked by mailform (another client, or no revocation endpoint): remove it in the provider's console".to_string(),
            Err(why) => format!("could not be revoked ({why}): remove it in the provider's console"),
        };
        let _ = self.printer.err(&format!(
            "note: {name}: the person's grant it held before {note}\n"
        ));
    }
}
