//! `mailform import NAME [--from FILE]`: adopt a grant made elsewhere (a
//! refresh token from `mutt_oauth2`, oama, pizauth, or a provider console).
//!
//! The token is read from a file or standard input, never from an argument
//! (process lists show those). It is refreshed once at the asset's provider:
//! that proves it alive, and the answer says which scopes it holds and, with
//! an ID token, whose it is. Then it is sealed like a consent's, under the
//! state lock. A grant of another account, one short of a scope, or one the
//! provider refuses is not stored.

use std::io::Read as _;
use std::path::Path;

use super::{Context, ExitStatus};
use crate::error::Error;
use crate::oauth::{OAuthError, ProviderClient, Whose};
use crate::secret::Secret;
use crate::store::key;

pub fn run(ctx: &Context<'_>, name: &str, from: &Path) -> Result<ExitStatus, Error> {
    let (config, settings) = ctx.config()?;
    super::known_asset(name, config.assets.keys().map(String::as_str), &config)?;
    let asset = &config.assets[name];
    let provider = config.provider_of(asset);
    if provider.grant.is_organisation() {
        return Err(Error::Usage(format!(
            "{name}: provider `{}` has grant = \"{}\": there is no grant to import; mailform apply obtains the app's token",
            provider.name,
            provider.grant.as_str()
        )));
    }
    let refresh = read_token(from)?;
    super::check_secrets(ctx, &config, &[name.to_string()])?;
    let boxed = Context::store(&config)?;
    let store = &*boxed;
    store.prepare()?;
    let _lock = ctx.lock(store, "import", settings.lock_timeout)?;
    let mut state = store.load_folded()?.unwrap_or_default();
    if state.assets.get(name).is_some_and(|r| r.token.is_some()) {
        return Err(Error::Usage(format!(
            "{name} holds a grant already; forget it first (mailform state rm {name}), or keep it"
        )));
    }
    let (key, origin) = key::load_or_create(&config.state_dir(), Some(&state))?;
    if let key::Origin::Created(path) = origin {
        ctx.printer.err(&format!(
            "Created the token-encryption key {} (mode 0600). Back it up: without it stored tokens are lost.\n",
            path.display()
        ))?;
    }
    let provider = config.provider_of(asset);
    let refused = |why: String| Error::Usage(format!("{name}: the grant was not imported: {why}"));
    let client = ProviderClient::new(provider, provider.client_secret()?)
        .map_err(|e| refused(e.to_string()))?;
    let grant = match crate::parallel::runtime()?.block_on(client.refresh(&refresh)) {
        Ok(grant) => grant,
        Err(e @ OAuthError::Revoked { .. }) => {
            return Err(refused(format!(
                "the provider refused the refresh token ({e})"
            )));
        }
        Err(e) => return Err(refused(e.to_string())),
    };
    // Whose it is, when the answer says.
    match grant.whose(asset.consenter()) {
        Whose::Other(who) => {
            return Err(refused(format!(
                "it is {who}'s grant, not {}'s",
                asset.consenter()
            )));
        }
        Whose::Untrustworthy(why) => return Err(refused(why)),
        Whose::Expected | Whose::Unknown => {}
    }
    let granted = grant.scopes.clone().unwrap_or_else(|| asset.scopes.clone());
    let missing = crate::plan::missing_scopes(&asset.scopes, &granted);
    if !missing.is_empty() {
        return Err(refused(format!(
            "it lacks {} of the scopes the config requires",
            missing.join(", ")
        )));
    }
    let applied = crate::plan::applied(&config, asset);
    grant.insert_into(
        &mut state,
        &key,
        name,
        applied,
        granted.clone(),
        Some(refresh),
    );
    store.save(&mut state)?;
    ctx.printer.err(&format!(
        "Imported a grant for {name} (scopes: {}); prove its SMTP login with mailform plan --check-smtp --target {name}.\n",
        crate::diagnostic::escaped(&granted.join(" "))
    ))?;
    Ok(ExitStatus::Success)
}

/// The refresh token in `from` ("-": standard input): one line, trimmed.
/// A file must be private to its owner, as the other secret files are.
fn read_token(from: &Path) -> Result<Secret, Error> {
    let text = if from.as_os_str() == "-" {
        let mut text = zeroize::Zeroizing::new(String::new());
        std::io::stdin()
            .take(64 * 1024)
            .read_to_string(&mut text)
            .map_err(|source| Error::Io {
                action: "read the refresh token from",
                path: "standard input".into(),
                source,
            })?;
        text
    } else {
        crate::files::read_secret_file(from).map_err(|e| {
            Error::Usage(format!(
                "cannot read the refresh token from {}: {e}",
                from.display()
            ))
        })?
    };
    let token = text.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(Error::Usage(format!(
            "{} does not hold one refresh token (one line, no spaces)",
            if from.as_os_str() == "-" {
                "standard input".to_string()
            } else {
                from.display().to_string()
            }
        )));
    }
    Ok(Secret::new(token))
}
