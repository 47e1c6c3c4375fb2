use super::words::within_one_edit;
use super::*;

fn m(text: &str) -> String {
    let masked = mask_secrets(text);
    assert_eq!(masked.len(), text.len());
    assert_eq!(
        masked.match_indices('\n').collect::<Vec<_>>(),
        text.match_indices('\n').collect::<Vec<_>>()
    );
    masked
}

#[test]
fn one_edit_means_one_typo() {
    for (a, b) in [
        ("secert", "secret"),
        ("secet", "secret"),
        ("secrets", "secret"),
        ("sxcret", "secret"),
        ("secret", "secret"),
    ] {
        assert!(within_one_edit(a.as_bytes(), b.as_bytes()), "{a}");
    }
    for (a, b) in [
        ("scerte", "secret"),
        ("sec", "secret"),
        ("email", "token"),
        ("tkoen!", "token"),
    ] {
        assert!(!within_one_edit(a.as_bytes(), b.as_bytes()), "{a}");
    }
}

#[test]
fn only_whole_secret_words_name_a_secret() {
    for key in ["api_token", "password", "clientSecret", "pat", "apikey"] {
        assert!(names_secret(key), "{key}");
    }
    for key in ["broken", "passed", "secert", "team", "queue"] {
        assert!(!names_secret(key), "{key}");
    }
    assert!(looks_secret("broken") && looks_secret("secert"));
}

#[test]
fn secret_keys_are_recognised_with_typos_and_places_are_not() {
    for k in [
        "client_secret",
        "client_secert",
        "clientSecret",
        "password",
        "refresh_token",
        "api_key",
        "secrets",
        "pwd",
    ] {
        assert!(looks_secret(k), "{k}");
    }
    for k in [
        "client_id",
        "token_url",
        "credentials_file",
        "email",
        "scopes",
        "smtp",
        "security",
        "tenant",
        "test_users",
    ] {
        assert!(!looks_secret(k), "{k}");
    }
}

#[test]
fn masks_well_formed_and_broken_secret_lines() {
    let cases = [
        (
            "client_secret = \"hunter2\"\n",
            "client_secret = \"*******\"\n",
        ),
        ("client_secret = \"hunter2\n", "client_secret = \"*******\n"),
        (
            "client_secret = \"hu\\qnter2\"\n",
            "client_secret = \"*********\"\n",
        ),
        (
            "client_secret = \"hunter2\" junk\n",
            "client_secret = \"*******\" ****\n",
        ),
        ("client_secert = 'hunter2'\n", "client_secert = '*******'\n"),
        (
            "client_secret = [\"hunter2\"]\n",
            "client_secret = [\"*******\"]\n",
        ),
        ("client_secret = 7\n", "client_secret = *\n"),
        ("client_secret = 42\n", "client_secret = **\n"),
        (
            "client_secret = { value = \"hunter2\" }\n",
            "client_secret = { value = \"*******\" }\n",
        ),
        (
            "client_secret = { env = \"GOOGLE_SECRET\" }\n",
            "client_secret = { env = \"GOOGLE_SECRET\" }\n",
        ),
        (
            "client_secret = { env = \"GOCSPX-hunter2\" }\n",
            "client_secret = { env = \"**************\" }\n",
        ),
        (
            "client_secret = { file = \"secrets/x\", bad = 1 }\n",
            "client_secret = { file = \"secrets/x\", bad = * }\n",
        ),
        (
            "auth_params = { client_secret = \"hunter2\" }\n",
            "auth_params = { client_secret = \"*******\" }\n",
        ),
        (
            "providers.lab.client_secret = \"hunter2\"\n",
            "providers.lab.client_secret = \"*******\"\n",
        ),
        ("client_secret \"hunter2\"\n", "client_secret *********\n"),
        (
            "\"client_secret\" = \"hunter2\" # was hunter2\n",
            "\"client_secret\" = \"*******\" * *** *******\n",
        ),
        ("email = \"a@b.c\"\n", "email = \"a@b.c\"\n"),
    ];
    for (text, want) in cases {
        assert_eq!(m(text), want, "{text}");
    }
}

#[test]
fn multi_line_secrets_keep_their_lines() {
    let text = "client_secret = \"\"\"\nhunter2\nhunter3\"\"\"\nemail = \"x\"\n";
    assert_eq!(
        m(text),
        "client_secret = \"\"\"\n*******\n*******\"\"\"\nemail = \"x\"\n"
    );
    let text = "client_secret = [\n  \"hunter2\", # hunter2\n  \"x\",\n]\nemail = \"x\"\n";
    assert_eq!(
        m(text),
        "client_secret = [\n  \"*******\", * *******\n  \"*\",\n]\nemail = \"x\"\n"
    );
}

#[test]
fn tables_named_like_secrets_mask_their_values() {
    let text = "[providers.lab.client_secret]\nenv = \"LAB\"\nvalue = \"hunter2\"\nhunter3\n";
    assert_eq!(
        m(text),
        "[providers.lab.client_secret]\nenv = \"LAB\"\nvalue = \"*******\"\n*******\n"
    );
}

#[test]
fn secret_lines_in_odd_places_are_masked_too() {
    // Commented out.
    assert_eq!(
        m("# client_secret = \"hunter2\"\n"),
        "# client_secret = *********\n"
    );
    // Swallowed by an unclosed multi-line string: all of it is masked
    // (no field takes a multi-line string).
    assert_eq!(
        m("email = \"\"\"\nclient_secret = \"hunter2\"\n"),
        "email = \"\"\"\n*************************\n"
    );
    // A multi-line secret whose key a stray quote or `#` hid, and one
    // whose opening quotes were cut: its lines are masked all the same.
    assert_eq!(
        m("\"client_secret = \"\"\"\nhunter2\nhunter3\"\"\"\nx = 1\n"),
        "\"client_secret = \"\"\"\n*******\n*******\"\"\"\nx = 1\n"
    );
    assert_eq!(
        m("client_secret =\"\"\nhunter2\nhunter3\"\"\"\nx = 1\n"),
        "client_secret =\"\"\n*******\n*******\"\"\"\nx = 1\n"
    );
    // Swallowed by an unclosed array.
    assert_eq!(
        m("scopes = [\"a\",\nclient_secret = \"hunter2\"\n"),
        "scopes = [\"a\",\nclient_secret = *********\n"
    );
    // A plain comment stays as it is.
    assert_eq!(
        m("# the secret is in vault\n"),
        "# the secret is in vault\n"
    );
}

#[test]
fn passwords_in_urls_are_masked_wherever_they_are() {
    for line in [
        "url = \"postgres://ops:SECRET@db.example.com:5432/mail\"\n",
        "url = 'postgresql://ops:SECRET@[::1]/mail?sslmode=require'\n",
        "# url = postgres://ops:SECRET@db/mail\n",
        "[state] url = \"postgres://ops:SECRET@db\n",
        "url = postgres://o:p:SECRET@db/x\n",
        "url = \"postgres://ops:it's/a?SECRET#x@db/mail\"\n",
        "url = 'postgres://ops:SECRET\"q@db'\n",
        "url = { env = \"postgres://ops:SE/CRET@db:5432/x\" }\n",
        "url = \"postgres://ops:my SECRET pass@db/mail\"\n",
        "# a://ops:SECRET@h b://ops:SECRET@h\nc://ops:SECRET@h\n",
        "url = \"postgres://ops@db/mail?sslmode=require&password=SECRET&x=1\"\n",
        "url = \"postgres://ops@db/mail?PASSWORD=SECRET\" # note\n",
    ] {
        let masked = m(line);
        assert!(!masked.contains("SECRET"), "{line:?} → {masked:?}");
        assert!(
            masked.contains("ops") || masked.contains("o:"),
            "{masked:?}"
        );
    }
    let plain = "token_url = \"https://oauth2.googleapis.com/token\"\nurl = \"postgres://ops@db/mail\"\nt = \"https://h:8443/t\" # owner: bob@example.com\n";
    assert_eq!(m(plain), plain);
}

/// Shapes a review found unmasked: each line's SECRET must go.
#[test]
fn secrets_in_shapes_the_structure_cannot_follow() {
    let cases = [
        "\"client_secret\": \"GOCSPX-SECRET\",\n",
        "client = {\"client_id\":\"x\",\"client_secret\":\"GOCSPX-SECRET\"}\n",
        "{\"installed\":{\"client_id\":\"x\",\"client_secret\":\"SECRET\"}}\n",
        "[providers.lab] client_secret = \"SECRET\"\n",
        "[client_secret] \"SECRET\"\n",
        "[providers.lab] # client_secret = SECRET\n",
        "client_secret: c2VjcmV0SECRET==\n",
        "client_secret c2VjcmV0SECRET==\n",
        "client_id = \"x\", client_secret = \"SECRET\"\n",
        "email = \"a@b\" # client_secret = SECRET\n",
        "client_secret =\n  \"SECRET\"\n",
        "clientSecert = \"SECRET\"\n",
        "clientsecrt = \"SECRET\"\n",
        "refresh_tokn = \"SECRET\"\n",
        "path = \"C:\\dir\\\nclient_secret = \"SECRET\"\n",
        "client_secret = {\n  value = \"SECRET\n}\n",
        "x = {\n  client_secret = \"SECRET\",\n}\n",
    ];
    for text in cases {
        let masked = m(text);
        assert!(!masked.contains("SECRET"), "{text:?} -> {masked:?}");
    }
    // And references stay readable where the structure is sound.
    assert_eq!(
        m("client_secret = { env = \"LAB_SECRET\" }\n"),
        "client_secret = { env = \"LAB_SECRET\" }\n"
    );
    assert!(!looks_secret("security") && !looks_secret("smtpSecurity"));
}

#[test]
fn hostile_runs_of_lines_cost_one_pass() {
    // Each `#pwd=[` line opens an array that never closes; masking must
    // not rescan the rest of the text for every one of them.
    let text = "#pwd=[\n".repeat(200_000);
    let masked = m(&text);
    assert!(masked.starts_with("#pwd=*"));
}

#[test]
fn depth_is_measured_without_recursion() {
    let deep = format!("x = {}\n", "[{ a = ".repeat(200_000));
    let s = scan(&deep, 32);
    assert!(
        s.max_depth > 32 && s.too_deep_at.is_some_and(|at| at < 200),
        "{:?}",
        s.too_deep_at
    );
    // Masking walks the whole text, all 400,000 levels, on a heap stack.
    assert_eq!(mask_secrets(&deep).len(), deep.len());
    let dotted = format!("{}b = 1\n", "a.".repeat(300));
    assert_eq!(scan(&dotted, 32).too_deep_at, Some(0));
    let fine = "[providers.lab]\nsmtp = { host = \"x\" }\n";
    assert_eq!(scan(fine, 32).too_deep_at, None);
}
