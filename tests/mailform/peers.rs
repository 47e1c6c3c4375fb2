//! Self-tests of the test harness (not of mailform): the peers behave as the
//! real providers mailform will meet, so later tests can trust them.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{SmtpConnection, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Message, SmtpTransport, Transport as _};
use serde_json::Value;

use crate::support::peers::{
    Peers, authorization, callback_query, check_node, consent_and_exchange, exchange,
    offline_tokens, peers, random, refresh, token_request,
};

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";

fn tls_parameters(p: &Peers) -> TlsParameters {
    let ca =
        lettre::transport::smtp::client::Certificate::from_pem(&std::fs::read(&p.ca_file).unwrap())
            .unwrap();
    TlsParameters::builder(p.smtp.host.clone())
        .add_root_certificate(ca)
        .build_rustls()
        .unwrap()
}

/// An SMTP transport logging in with XOAUTH2 on the STARTTLS or implicit-TLS port.
pub(crate) fn transport(p: &Peers, implicit_tls: bool, user: &str, token: &str) -> SmtpTransport {
    let (port, tls) = if implicit_tls {
        (p.smtp.tls_port, Tls::Wrapper(tls_parameters(p)))
    } else {
        (p.smtp.starttls_port, Tls::Required(tls_parameters(p)))
    };
    SmtpTransport::builder_dangerous(&p.smtp.host)
        .port(port)
        .tls(tls)
        .credentials(Credentials::new(user.to_string(), token.to_string()))
        .authentication(vec![Mechanism::Xoauth2])
        .timeout(Some(Duration::from_secs(10)))
        .build()
}

/// A raw session up to the point of AUTH, for reading the server's own words.
fn raw_session(p: &Peers) -> SmtpConnection {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], p.smtp.starttls_port));
    let hello = ClientId::Domain("mailform.test".into());
    let mut conn =
        SmtpConnection::connect(addr, Some(Duration::from_secs(10)), &hello, None, None).unwrap();
    conn.starttls(&tls_parameters(p), &hello).unwrap();
    conn
}

fn xoauth2(user: &str, token: &str) -> String {
    STANDARD.encode(format!("user={user}\x01auth=Bearer {token}\x01\x01"))
}

#[test]
fn peers_start_and_say_where_they_are() {
    let p = peers();
    eprintln!("peers started in {:?}", p.startup);
    assert!(p.issuer.starts_with("https://127.0.0.1:"));
    assert!(p.users.contains_key(ALICE) && p.users.contains_key(BOB));
    let res = p
        .http()
        .get(format!("{}/.well-known/openid-configuration", p.issuer))
        .send()
        .unwrap();
    let meta: Value = res.json().unwrap();
    assert_eq!(
        meta["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(meta["revocation_endpoint"], p.endpoints.revocation);
    assert_eq!(meta["introspection_endpoint"], p.endpoints.introspection);
    assert_eq!(
        meta["device_authorization_endpoint"],
        p.endpoints.device_authorization
    );
    // Served with the test CA only: a client without it refuses.
    assert!(
        reqwest::blocking::Client::new()
            .get(&p.issuer)
            .send()
            .is_err()
    );
}

#[test]
fn code_with_pkce_then_refresh_then_smtp_login_on_both_ports() {
    let p = peers();
    let client = &p.clients.confidential;
    let tokens = offline_tokens(p, client, ALICE);
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(
        tokens["scope"]
            .as_str()
            .unwrap()
            .split(' ')
            .any(|s| s == "mail"),
        "{tokens}"
    );
    let refresh_token = tokens["refresh_token"]
        .as_str()
        .expect("a refresh token for offline_access");

    let (status, refreshed) = refresh(p, client, refresh_token);
    assert_eq!(status, 200, "{refreshed}");
    let access = refreshed["access_token"].as_str().unwrap();
    assert_ne!(access, tokens["access_token"].as_str().unwrap());

    for implicit in [false, true] {
        let t = transport(p, implicit, ALICE, access);
        assert!(
            t.test_connection().unwrap(),
            "login on the {} port",
            if implicit { "TLS" } else { "STARTTLS" }
        );
        let subject = format!("harness check {}", random(6));
        let msg = Message::builder()
            .from(ALICE.parse().unwrap())
            .to(BOB.parse().unwrap())
            .subject(&subject)
            .body("hello".to_string())
            .unwrap();
        t.send(&msg).unwrap();
        let (envelope, raw) = p
            .messages()
            .into_iter()
            .find(|(_, raw)| raw.contains(&subject))
            .expect("message kept");
        assert_eq!(envelope["user"], ALICE);
        assert_eq!(envelope["to"], serde_json::json!([BOB]));
        assert_eq!(envelope["secure"], true);
        assert!(raw.contains("hello"));
    }
}

#[test]
fn pkce_is_required() {
    let p = peers();
    let mut url =
        url::Url::parse(&authorization(p, &p.clients.confidential, "mail", &[]).url).unwrap();
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| !k.starts_with("code_challenge"))
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    url.query_pairs_mut().clear().extend_pairs(kept);
    let redirect = p.consent(url.as_str(), ALICE, &["--no-callback"]).unwrap();
    let q = callback_query(&redirect);
    assert_eq!(
        q.get("error").map(String::as_str),
        Some("invalid_request"),
        "{redirect}"
    );
}

#[test]
fn a_bogus_token_gets_gmail_style_334_then_535() {
    let p = peers();
    let mut conn = raw_session(p);
    let challenge = conn
        .command(format!(
            "AUTH XOAUTH2 {}\r\n",
            xoauth2(ALICE, "not-a-token")
        ))
        .unwrap();
    assert_eq!(challenge.code().to_string(), "334");
    let status: Value = serde_json::from_slice(
        &STANDARD
            .decode(challenge.first_line().unwrap().trim())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(status["status"], "401");
    assert_eq!(status["schemes"], "bearer");
    assert_eq!(
        status["scope"].as_str(),
        Some(p.smtp.scopes.join(" ").as_str()),
        "{status}"
    );
    let refused = conn.command("\r\n").unwrap_err();
    assert!(refused.to_string().contains("535"), "{refused}");
}

#[test]
fn a_token_of_another_user_is_refused() {
    let p = peers();
    let tokens = offline_tokens(p, &p.clients.public, BOB);
    let err = transport(p, false, ALICE, tokens["access_token"].as_str().unwrap())
        .test_connection()
        .unwrap_err();
    assert!(
        err.to_string().contains("challenge") || err.to_string().contains("535"),
        "{err}"
    );
    assert!(
        transport(p, false, BOB, tokens["access_token"].as_str().unwrap())
            .test_connection()
            .unwrap()
    );
}

#[test]
fn no_auth_is_offered_before_tls() {
    let p = peers();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], p.smtp.starttls_port));
    let hello = ClientId::Domain("mailform.test".into());
    let mut conn =
        SmtpConnection::connect(addr, Some(Duration::from_secs(10)), &hello, None, None).unwrap();
    assert!(conn.can_starttls());
    let refused = conn
        .command(format!("AUTH XOAUTH2 {}\r\n", xoauth2(ALICE, "x")))
        .unwrap_err();
    assert!(
        refused.to_string().starts_with("permanent error (5"),
        "{refused}"
    );
}

#[test]
fn a_removed_grant_gives_invalid_grant_and_smtp_refuses() {
    let p = peers();
    // A user of its own: revoking grants must not race other tests.
    let user = "olga@example.test";
    let client = &p.clients.confidential;
    let tokens = offline_tokens(p, client, user);
    let access = tokens["access_token"].as_str().unwrap();
    assert!(transport(p, false, user, access).test_connection().unwrap());

    assert!(p.revoke_grants(user) >= 1);
    let (status, body) = refresh(p, client, tokens["refresh_token"].as_str().unwrap());
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert!(transport(p, false, user, access).test_connection().is_err());
}

#[test]
fn an_expired_access_token_keeps_the_grant() {
    let p = peers();
    // A user of its own: expiring tokens must not race other tests.
    let user = "pete@example.test";
    let client = &p.clients.public;
    let tokens = offline_tokens(p, client, user);
    let old = tokens["access_token"].as_str().unwrap();
    assert!(p.expire_access_tokens(user) >= 1);
    assert!(transport(p, true, user, old).test_connection().is_err());
    let (status, body) = refresh(p, client, tokens["refresh_token"].as_str().unwrap());
    assert_eq!(status, 200, "{body}");
    // A public client's refresh token rotates: the new one must be kept.
    assert_ne!(body["refresh_token"], tokens["refresh_token"]);
    assert!(
        transport(p, true, user, body["access_token"].as_str().unwrap())
            .test_connection()
            .unwrap()
    );
}

#[test]
fn revocation_endpoint_revokes_a_refresh_token() {
    let p = peers();
    let client = &p.clients.confidential;
    let tokens = offline_tokens(p, client, ALICE);
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    let res = p
        .http()
        .post(&p.endpoints.revocation)
        .basic_auth(&client.client_id, client.client_secret.as_ref())
        .form(&[
            ("token", refresh_token),
            ("token_type_hint", "refresh_token"),
        ])
        .send()
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(
        refresh(p, client, refresh_token).1["error"],
        "invalid_grant"
    );
}

#[test]
fn google_style_access_type_offline_gives_a_refresh_token() {
    let p = peers();
    let google = "https://mail.google.com/";
    let plain = consent_and_exchange(p, &p.clients.public, ALICE, google, &[]);
    assert!(plain.get("refresh_token").is_none(), "{plain}");
    let offline = consent_and_exchange(
        p,
        &p.clients.public,
        ALICE,
        google,
        &[("access_type", "offline"), ("prompt", "consent")],
    );
    assert!(offline["refresh_token"].is_string(), "{offline}");
    assert_eq!(offline["scope"], google);
    assert!(
        transport(p, false, ALICE, offline["access_token"].as_str().unwrap())
            .test_connection()
            .unwrap()
    );
}

#[test]
fn fewer_scopes_approved_show_in_the_token_response() {
    let p = peers();
    let req = authorization(
        p,
        &p.clients.public,
        "mail offline_access",
        &[("prompt", "consent")],
    );
    let redirect = p
        .consent(
            &req.url,
            BOB,
            &["--no-callback", "--scopes", "offline_access"],
        )
        .unwrap();
    let (status, body) = exchange(p, &p.clients.public, &req, &redirect);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "offline_access", "{body}");
    assert!(body["refresh_token"].is_string(), "{body}");
    assert!(
        transport(p, false, BOB, body["access_token"].as_str().unwrap())
            .test_connection()
            .is_err()
    );
}

#[test]
fn denied_consent_and_wrong_password_are_reported() {
    let p = peers();
    let req = authorization(p, &p.clients.confidential, "mail", &[]);
    let redirect = p
        .consent(&req.url, ALICE, &["--no-callback", "--deny"])
        .unwrap();
    let q = callback_query(&redirect);
    assert_eq!(q.get("error").map(String::as_str), Some("access_denied"));
    assert_eq!(q.get("state"), Some(&req.state));
    let err = p
        .consent(&req.url, ALICE, &["--no-callback", "--password", "wrong"])
        .unwrap_err();
    assert!(
        err.contains("sign-in refused for alice@example.test"),
        "{err}"
    );
}

#[test]
fn device_flow_works() {
    let p = peers();
    let client = &p.clients.public;
    let res = p
        .http()
        .post(&p.endpoints.device_authorization)
        .form(&[
            ("client_id", client.client_id.as_str()),
            ("scope", "mail offline_access"),
            ("prompt", "consent"),
        ])
        .send()
        .unwrap();
    let device: Value = res.json().unwrap();
    let grant = "urn:ietf:params:oauth:grant-type:device_code";
    let code = device["device_code"].as_str().unwrap();
    let (status, pending) =
        token_request(p, client, &[("grant_type", grant), ("device_code", code)]);
    assert_eq!(
        (status, pending["error"].as_str()),
        (400, Some("authorization_pending"))
    );

    let done = p
        .consent(
            device["verification_uri_complete"].as_str().unwrap(),
            ALICE,
            &[],
        )
        .unwrap();
    assert!(!done.is_empty());
    let (status, tokens) =
        token_request(p, client, &[("grant_type", grant), ("device_code", code)]);
    assert_eq!(status, 200, "{tokens}");
    assert!(
        transport(p, false, ALICE, tokens["access_token"].as_str().unwrap())
            .test_connection()
            .unwrap()
    );
}

#[test]
fn the_consent_browser_delivers_the_code_to_a_loopback_listener() {
    let p = peers();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let req = authorization(
        p,
        &p.clients.confidential,
        "mail offline_access",
        &[("prompt", "consent")],
    );
    let url = req
        .url
        .replace("127.0.0.1%3A49152", &format!("127.0.0.1%3A{port}"));
    // As mailform will: `$BROWSER URL`, with the person's choices in the environment.
    let mut browser = Command::new(&p.consent_browser)
        .arg(&url)
        .stdout(std::process::Stdio::null())
        .env("PEERS_CA", &p.ca_file)
        .env("CONSENT_USER", BOB)
        .env("CONSENT_PASSWORD", p.password(BOB))
        .spawn()
        .unwrap();
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                let _ = browser.kill();
                panic!("the consent browser never reached the loopback listener: {e}");
            }
        }
    };
    stream.set_nonblocking(false).unwrap();
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).unwrap();
    stream
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        .unwrap();
    drop(stream);
    assert!(browser.wait().unwrap().success());
    assert!(line.starts_with("GET /callback?code="), "{line}");
    assert!(line.contains(&format!("state={}", req.state)), "{line}");
}

#[test]
fn latency_is_added_to_every_round_trip() {
    let slow = Peers::start(150).unwrap();
    assert_eq!(slow.latency_ms, 150);
    let started = Instant::now();
    let res = slow
        .http()
        .get(format!("{}/.well-known/openid-configuration", slow.issuer))
        .send()
        .unwrap();
    assert!(res.status().is_success());
    // A fresh TLS connection and one request are several round trips, each
    // delayed at least 150 ms: a lower bound, never flaky.
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn missing_node_packages_are_named_with_the_fix() {
    let empty = tempfile::tempdir().unwrap();
    let err = check_node(empty.path()).unwrap_err();
    assert!(
        err.contains("`oidc-provider` is not installed; run: npm ci --prefix tests/peers"),
        "{err}"
    );
    check_node(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers")).unwrap();
}

#[test]
fn introspection_tells_the_smtp_server_who_and_what() {
    let p = peers();
    let tokens = offline_tokens(p, &p.clients.confidential, ALICE);
    let ask = |token: &str| p.introspect(token);
    let info = ask(tokens["access_token"].as_str().unwrap());
    assert_eq!(
        (info["active"].as_bool(), info["sub"].as_str()),
        (Some(true), Some(ALICE)),
        "{info}"
    );
    assert!(
        info["scope"]
            .as_str()
            .unwrap()
            .split(' ')
            .any(|s| s == "mail"),
        "{info}"
    );
    assert_eq!(ask("not-a-token")["active"], false);
}
