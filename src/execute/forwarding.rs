//! Gmail's forwarding at apply, when the plan found it differs from
//! `forwarding_address`: set through the Gmail API by a service account
//! allowed to (domain-wide delegation for `gmail.settings.sharing`);
//! otherwise a person's grant may read the settings, not change them, and
//! the asset is reported as needing the step by hand, not passed over.

use chrono::Utc;

use super::Run;
use crate::plan;
use crate::state::State;

impl Run<'_> {
    pub(super) fn forwarding(&mut self, state: &mut State, change: &plan::Change) {
        let steps: Vec<String> = change
            .reasons
            .iter()
            .filter_map(|r| match r {
                plan::Reason::ForwardingDrift { what, hint, .. } => {
                    Some(format!("{what} — {hint}"))
                }
                _ => None,
            })
            .collect();
        if steps.is_empty() {
            return;
        }
        let name = change.asset.as_str();
        let asset = &self.config.assets[name];
        let provider = self.config.provider_of(asset);
        // The plan decided who makes the change (its hint says so).
        let may_set = plan::forwarding::apply_sets(&plan::applied(self.config, asset));
        let (true, Some(want), Some(base)) = (
            may_set,
            asset.forwarding_address.clone(),
            provider.gmail_api_url.clone(),
        ) else {
            self.fail(
                name,
                &format!(
                    "Gmail forwarding needs a step by hand (mailform's grant may read the settings, not change them): {}",
                    steps.join("; ")
                ),
            );
            return;
        };
        match self.set_forwarding(name, &want, &base) {
            Ok(crate::gmail::Set::On) => {
                let _ = self.printer.err(&format!(
                    "{name}: Gmail forwarding to {want} turned on (service account)\n"
                ));
                if let Some(record) = state.assets.get_mut(name) {
                    record.forwarding_check = Some(crate::state::SmtpCheck {
                        at: Utc::now(),
                        ok: true,
                        server: base.to_string(),
                        detail: format!("forwarding to {want}"),
                        hint: None,
                        unproven: false,
                        reconsent: false,
                    });
                }
                if let Err(why) = self.save(state, name) {
                    self.fail(name, &format!("the forwarding check was not stored: {why}"));
                }
            }
            Ok(crate::gmail::Set::Pending) => self.fail(
                name,
                &format!(
                    "Gmail sent a confirmation to {want}: whoever reads it — the contact center — must confirm it; then mailform apply turns forwarding on"
                ),
            ),
            Err(why) => self.fail(name, &format!("Gmail forwarding could not be set: {why}")),
        }
    }

    /// Sets `name`'s forwarding to `want` with a fresh app token.
    fn set_forwarding(
        &mut self,
        name: &str,
        want: &str,
        base: &url::Url,
    ) -> Result<crate::gmail::Set, String> {
        let asset = &self.config.assets[name];
        let client = self.client(&asset.provider)?;
        // The provider client's own transport (its trust, its timeouts).
        let transport = client.transport().clone();
        let (mailbox, scopes) = (asset.username.clone(), asset.scopes.clone());
        let disposition = asset
            .forwarding_disposition
            .map(crate::config::raw::Disposition::as_str);
        self.runtime.block_on(async {
            let grant = client
                .app_token(&mailbox, &scopes)
                .await
                .map_err(|e| e.to_string())?;
            crate::gmail::set_forwarding(&transport, base, &grant.access_token, want, disposition)
                .await
        })
    }
}
