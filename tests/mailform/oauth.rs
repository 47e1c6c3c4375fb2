//! The provider client against the real OAuth server (`oidc-provider` on
//! loopback, HTTPS with the test CA): refresh and rotation, a removed grant,
//! a refused client, RFC 7009 revocation checked by introspection, and
//! providers that are down or never answer.

use std::time::{Duration, Instant};

use mailform::config::{self, Provider};
use mailform::oauth::{OAuthError, ProviderClient, TokenKind};
use mailform::secret::Secret;

use crate::support::peers::{Client, Peers, offline_tokens, peers, refresh};

/// The provider the test server is, as an operator would write it.
fn provider(p: &Peers, client: &Client, token_url: &str) -> Provider {
    let text = crate::support::peers::LabProvider::without_consent(p, client, token_url).text(p);
    let mut loaded = config::parse(std::path::Path::new("assets.toml"), text);
    assert!(!loaded.diagnostics.has_errors(), "{:?}", loaded.diagnostics);
    loaded
        .config
        .take()
        .unwrap()
        .providers
        .remove("lab")
        .unwrap()
}

fn client_for(p: &Peers, client: &Client) -> ProviderClient {
    ProviderClient::new(
        &provider(p, client, &p.endpoints.token),
        client.client_secret.clone().map(Secret::new),
    )
    .unwrap()
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// No error text or `Debug` may hold a token or the client secret.
#[track_caller]
fn assert_clean(e: &OAuthError, secrets: &[&str]) {
    for text in [e.to_string(), format!("{e:?}")] {
        for s in secrets {
            assert!(!text.contains(s), "{s} leaked: {text}");
        }
    }
}

#[test]
fn a_confidential_client_refreshes_and_the_new_token_is_live() {
    let p = peers();
    let client = &p.clients.confidential;
    let tokens = offline_tokens(p, client, "alice@example.test");
    let oauth = client_for(p, client);
    let grant =
        run(oauth.refresh(&Secret::new(tokens["refresh_token"].as_str().unwrap()))).unwrap();
    let info = p.introspect(grant.access_token.expose());
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["sub"], "alice@example.test");
    assert!(grant.expires_in.is_some_and(|d| d > Duration::ZERO));
    let scopes = grant.scopes.expect("the server says what it granted");
    assert!(scopes.contains(&"mail".to_string()), "{scopes:?}");
    assert!(!format!("{:?}", grant.access_token).contains(grant.access_token.expose()));
}

#[test]
fn a_public_clients_refresh_token_rotates_and_the_old_one_dies() {
    let p = peers();
    let client = &p.clients.public;
    let tokens = offline_tokens(p, client, "alice@example.test");
    let old = tokens["refresh_token"].as_str().unwrap();
    let oauth = client_for(p, client);
    let grant = run(oauth.refresh(&Secret::new(old))).unwrap();
    let new = grant
        .refresh_token
        .expect("a public client's refresh token rotates");
    assert_ne!(new.expose(), old);
    let newer = run(oauth.refresh(&new))
        .unwrap()
        .refresh_token
        .expect("it rotates every time");
    // The rotated-away token is dead, and using it again is taken as theft:
    // the provider revokes the whole grant, the newest token with it. This
    // is why a rotated token is stored the moment it arrives.
    let err = run(oauth.refresh(&Secret::new(old))).unwrap_err();
    assert!(
        matches!(err, OAuthError::Revoked { ref error, .. } if error == "invalid_grant"),
        "{err}"
    );
    let err = run(oauth.refresh(&newer)).unwrap_err();
    assert!(matches!(err, OAuthError::Revoked { .. }), "{err}");
}

#[test]
fn a_removed_grant_is_revoked_in_the_providers_words() {
    let p = peers();
    // A user of its own: removing grants must not race other tests.
    let user = "erin@example.test";
    let client = &p.clients.confidential;
    let tokens = offline_tokens(p, client, user);
    assert!(p.revoke_grants(user) >= 1);
    let rt = tokens["refresh_token"].as_str().unwrap();
    let err = run(client_for(p, client).refresh(&Secret::new(rt))).unwrap_err();
    let OAuthError::Revoked { error, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(error, "invalid_grant");
    assert!(
        err.to_string()
            .starts_with("refresh token revoked or expired (invalid_grant"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("run mailform apply to consent again")
    );
    assert_clean(&err, &[rt]);
    assert!(!err.is_transient());
}

#[test]
fn a_wrong_client_secret_is_a_configuration_error() {
    let p = peers();
    let client = &p.clients.confidential;
    let tokens = offline_tokens(p, client, "alice@example.test");
    let rt = tokens["refresh_token"].as_str().unwrap();
    let wrong = "wrong-secret-SENTINEL";
    let oauth = ProviderClient::new(
        &provider(p, client, &p.endpoints.token),
        Some(Secret::new(wrong)),
    )
    .unwrap();
    let err = run(oauth.refresh(&Secret::new(rt))).unwrap_err();
    assert!(
        matches!(err, OAuthError::Config { ref error, .. } if error == "invalid_client"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("provider `lab` refused the OAuth client (invalid_client")
    );
    assert_clean(&err, &[rt, wrong]);
}

#[test]
fn revocation_kills_the_refresh_token_at_the_provider() {
    let p = peers();
    let client = &p.clients.confidential;
    let tokens = offline_tokens(p, client, "alice@example.test");
    let rt = tokens["refresh_token"].as_str().unwrap();
    assert_eq!(p.introspect(rt)["active"], true);
    let oauth = client_for(p, client);
    assert!(run(oauth.revoke(&Secret::new(rt), TokenKind::Refresh)).unwrap());
    assert_eq!(
        p.introspect(rt)["active"],
        false,
        "the provider confirms it is dead"
    );
    assert_eq!(refresh(p, client, rt).1["error"], "invalid_grant");
    // The public client has no secret: it revokes with its id in the form.
    let public = &p.clients.public;
    let tokens = offline_tokens(p, public, "alice@example.test");
    let at = tokens["access_token"].as_str().unwrap();
    assert!(run(client_for(p, public).revoke(&Secret::new(at), TokenKind::Access)).unwrap());
    assert_eq!(p.introspect(at)["active"], false);
}

#[test]
fn a_provider_that_is_down_or_silent_is_transient_not_drift() {
    let p = peers();
    let client = &p.clients.confidential;
    let rt = Secret::new("refresh-SENTINEL");
    // Nothing listens: connection refused, retried, then transient.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let url = format!("https://127.0.0.1:{port}/token");
    let oauth = ProviderClient::new(&provider(p, client, &url), None).unwrap();
    let started = Instant::now();
    let err = run(oauth.refresh(&rt)).unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("cannot connect"), "{err}");
    assert!(err.to_string().contains("transient, not drift"), "{err}");
    // Three attempts with 250 ms and 500 ms between them.
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
    assert_clean(&err, &["refresh-SENTINEL"]);

    // Accepts and never answers: bounded by the timeout, then transient.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "https://127.0.0.1:{}/token",
        silent.local_addr().unwrap().port()
    );
    let oauth =
        ProviderClient::with_timeout(&provider(p, client, &url), None, Duration::from_millis(300))
            .unwrap();
    let err = run(oauth.refresh(&rt)).unwrap_err();
    assert!(
        err.is_transient() && err.to_string().contains("timed out"),
        "{err}"
    );
    drop(silent);
}
