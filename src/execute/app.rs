//! Organisation grants at apply: no person consents. Each asset's token is
//! asked for with the app's own credentials (in parallel, up to
//! `parallelism`), stored as it arrives, and proven like a consent's.

use std::sync::Arc;

use super::{Run, action_of};
use crate::oauth::ProviderClient;
use crate::plan;
use crate::render;
use crate::state::State;

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
                Ok((client, mailbox, scopes)) => client.app_token(&mailbox, &scopes).await,
                Err(why) => Err(crate::oauth::OAuthError::Setup {
                    provider: String::new(),
                    what: "client",
                    why,
                }),
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
                        let granted = grant.scopes.clone().unwrap_or_else(|| asset.scopes.clone());
                        let applied = plan::applied(self.config, asset);
                        grant.insert_into(state, self.key, &name, applied, granted, None);
                        self.save(state, &name).map(|()| {
                            "app grant: token obtained and stored (no consent)".to_string()
                        })
                    }
                    Err(crate::oauth::OAuthError::Setup { why, .. }) if why.is_empty() => {
                        Err("the provider's client could not be made".to_string())
                    }
                    Err(e) if e.refusal().is_some() => Err(format!(
                        "{} (apply cannot fix this: an administrator can)",
                        crate::config::grants::refused(provider, asset, &e.to_string())
                    )),
                    Err(e) => Err(e.to_string()),
                };
                let ok = outcome.is_ok();
                self.record(&name, action, outcome);
                ok
            },
        ));
    }
}
