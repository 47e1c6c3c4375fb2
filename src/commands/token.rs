//! `mailform token NAME`: a valid access token on stdout, and nothing else,
//! for msmtp's `passwordeval` and other SMTP clients.
//!
//! The stored access token is printed when it is good for at least
//! [`MARGIN`] more; otherwise it is refreshed first, under the state lock,
//! and the new tokens are stored (a rotated refresh token must be). When no
//! refresh can help, the answer is "consent required", exit 1.

use super::{Context, ExitStatus};
use crate::error::Error;
use crate::observe::{self, Access};

pub fn run(ctx: &Context<'_>, name: &str, refresh: bool) -> Result<ExitStatus, Error> {
    let (config, settings) = ctx.config()?;
    let boxed = Context::store(&config)?;
    let access = Access {
        config: &config,
        store: &*boxed,
        lock: &|store, timeout| ctx.lock(store, "token", timeout),
        lock_timeout: settings.lock_timeout,
    };
    let (token, _, applied) = observe::access_token(&access, name, refresh)?;
    // What goes to a mail client's command line must be a bearer token and
    // nothing else (no space, no control character).
    if !crate::oauth::is_b64token(token.expose()) {
        return Err(Error::ConsentRequired {
            name: name.to_string(),
            why: "the stored access token has characters a bearer token cannot have (RFC 6750 b64token); it is not printed".into(),
        });
    }
    // The token is for the mailbox as applied; an unapplied move of its
    // SMTP endpoint is said (on stderr: stdout is the client's).
    if let Some(moved) = observe::moved_endpoint(&config, name, &applied) {
        ctx.printer.err(&format!("warning: {name}: {moved}\n"))?;
    }
    ctx.printer.out(&format!("{}\n", token.expose()))?;
    Ok(ExitStatus::Success)
}
