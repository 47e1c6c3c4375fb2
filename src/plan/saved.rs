//! The rules a saved plan (`plan --out`) must meet before `apply PLAN`
//! carries it out: it belongs to this state and this config, and each of
//! its changes is one the config and state allow. Pure: the caller reads
//! the file and names it in the error.

use super::{Action, Plan};
use crate::config::Config;
use crate::state::State;

impl Plan {
    /// Whether this saved plan applies to `state` and `config` as they are:
    /// the same lineage and serial, the same config file, and only assets
    /// the config or state know. The reason in words when not.
    pub fn check_saved(&self, config: &Config, state: &State) -> Result<(), String> {
        let lineage = (state.serial > 0).then_some(state.lineage);
        if self.lineage != lineage {
            return Err(match (self.lineage, lineage) {
                (Some(_), None) => "it was made against a state, and there is none here — run mailform plan again".into(),
                (None, Some(_)) => "it was made before any state existed, and there is one now — run mailform plan again".into(),
                _ => "it was made against another state (its lineage differs) — run mailform plan here".into(),
            });
        }
        if self.serial != state.serial {
            return Err(format!(
                "saved plan is stale: state serial is {}, the plan was made at {} — run mailform plan again",
                state.serial, self.serial
            ));
        }
        if self.config_digest != config.digest {
            return Err(format!(
                "{} changed since the plan was made — run mailform plan again",
                config.path.display()
            ));
        }
        if let Some(c) = self
            .changes
            .iter()
            .find(|c| !config.assets.contains_key(&c.asset) && !state.assets.contains_key(&c.asset))
        {
            return Err(format!(
                "it names asset `{}`, which is neither in the config nor in state",
                crate::diagnostic::shown(&c.asset)
            ));
        }
        Ok(())
    }

    /// Checks each change of this saved plan against `offline`, the plan of
    /// the same config and state made now without the network: a create or
    /// a delete must be that plan's too; an applied, configured asset may be
    /// a no-op, an update or a re-consent (what live checks and
    /// `--reconsent` decide). The emails, providers and field changes shown
    /// are then the config's and the state's, not the file's.
    pub fn limit_to(&mut self, offline: &Plan) -> Result<(), String> {
        for c in &mut self.changes {
            let Some(now) = offline.changes.iter().find(|o| o.asset == c.asset) else {
                return Err(format!(
                    "it names asset `{}`, which the config and state do not plan",
                    crate::diagnostic::shown(&c.asset)
                ));
            };
            // Live checks move an applied, configured asset among no-op,
            // update and re-consent (a refused login, a revoked grant, a
            // login that passes again); a create or a delete is the
            // config's alone. But a re-consent that config and state alone
            // require no live check can clear: writing the new fields over
            // those tokens would hand them to a client they were not made for.
            let kept = |a: Action| matches!(a, Action::NoOp | Action::Update | Action::Reconsent);
            let required = now.action == Action::Reconsent
                && now
                    .reasons
                    .iter()
                    .any(super::Reason::forces_reconsent_offline);
            let ok = c.action == now.action || (kept(c.action) && kept(now.action) && !required);
            if !ok {
                return Err(format!(
                    "it says {:?} for `{}`, but the config and state allow only {:?} (was it edited?)",
                    c.action, c.asset, now.action
                ));
            }
            c.email.clone_from(&now.email);
            c.provider.clone_from(&now.provider);
            c.fields.clone_from(&now.fields);
            c.grant.clone_from(&now.grant);
        }
        Ok(())
    }
}
