//! The config front door, tried as a new user and as an attacker would:
//! exit codes that survive closed pipes, secrets that never show whatever the
//! parse outcome, bounded output for hostile files, and the first ten minutes
//! of a new user.

use std::path::Path;

use crate::support::{Mailform, project};

const CONFIG: &str = concat!(
    crate::support::offline_lab!(),
    r#"
[assets.support]
email = "support@example.com"
provider = "lab"
"#
);

fn mf(dir: &Path) -> Mailform {
    Mailform::new(dir).env("LAB_CLIENT_SECRET", "x")
}

#[test]
fn a_closed_pipe_never_changes_the_exit_code() {
    let dir = project(&CONFIG.replace("support@example.com", "nobody"));
    // `validate 2>&1 | head -n 0`: the error still exits 1.
    assert_eq!(
        mf(dir.path()).run_closed(["validate"], true, true),
        1,
        "validate of a bad file with closed output"
    );
    let dir = project(CONFIG);
    // Changes found, stdout closed early: still 2, not 0.
    assert_eq!(
        mf(dir.path()).run_closed(["plan", "--offline", "--detailed-exitcode"], true, false),
        2
    );
    assert_eq!(
        mf(dir.path()).run_closed(
            ["plan", "--offline", "--detailed-exitcode", "--json"],
            true,
            true
        ),
        2
    );
    // And success stays success.
    assert_eq!(
        mf(dir.path()).run_closed(["plan", "--offline"], true, true),
        0
    );
}

/// Where a secret can hide in a broken file, for every command that reads
/// the config. The corpus checks `validate`'s exact words; this checks that
/// the other commands never print the value either.
#[test]
fn secrets_are_never_shown_by_any_command() {
    let lines = [
        "client_secret = \"SENTINEL-a\n",
        "client_secret = \"SENTINEL-b\\q\"\n",
        "client_secret = \"SENTINEL-c\" junk\n",
        "client_secert = \"SENTINEL-d\"\n",
        "client_secret = [\"SENTINEL-e\"]\n",
        "client_secret = { value = \"SENTINEL-f\" }\n",
        "client_secret = 4242424242\n",
        "client_secret = { env = \"SENTINEL-g\" }\n",
        "client_secret = { env = \"X\", other = \"SENTINEL-h\" }\n",
        "client_secret = \"\"\"\nSENTINEL-i\nSENTINEL-j\"\"\"\n",
        "auth_params = { client_secret = \"SENTINEL-k\" }\n",
        "password SENTINEL-l\n",
    ];
    for line in lines {
        let text = CONFIG.replace("client_secret = { env = \"LAB_CLIENT_SECRET\" }\n", line);
        let dir = project(&text);
        for args in [
            vec!["validate"],
            vec!["validate", "--json"],
            vec!["plan", "--offline"],
            vec!["plan", "--offline", "--json"],
            vec!["export", "support"],
            vec!["show"],
        ] {
            let run = mf(dir.path()).run(&args).code(1);
            assert!(
                !run.all().contains("SENTINEL") && !run.all().contains("4242424242"),
                "{args:?} on {line:?} printed a secret:\n{}",
                run.all()
            );
        }
    }
}

#[test]
fn a_credentials_file_holding_a_bare_string_is_not_echoed() {
    let dir = project(
        "version = 1\n[providers.google]\ncredentials_file = \"client.json\"\n[assets.support]\nemail = \"support@example.com\"\nprovider = \"google\"\n",
    );
    std::fs::write(dir.path().join("client.json"), "\"GOCSPX-SENTINEL\"\n").unwrap();
    let run = Mailform::new(dir.path()).run(["validate"]).code(1);
    assert!(!run.all().contains("SENTINEL"), "{}", run.all());
    assert!(
        run.stderr
            .contains("not a Google client JSON file (unexpected content at line 1, column 17)"),
        "{}",
        run.stderr
    );
}

#[test]
fn hostile_files_get_a_bounded_answer() {
    // 2,000 bad assets on one line: each diagnostic would re-print the line.
    let parts: Vec<String> = (0..2000)
        .map(|i| format!("a{i} = {{ email = \"bad{i}\", provider = \"p\" }}"))
        .collect();
    let wide = format!("version = 1\nassets = {{ {} }}\n", parts.join(", "));
    // 2.8 MB of unclosed nesting.
    let deep = format!("version = 1\nx = {}\n", "[{ a = ".repeat(400_000));
    for (name, text) in [("wide", &wide), ("deep", &deep)] {
        let dir = project(text);
        let run = Mailform::new(dir.path()).run(["validate"]).code(1);
        assert!(
            run.stderr.len() < 64 * 1024,
            "{name}: {} bytes of output",
            run.stderr.len()
        );
        let json = Mailform::new(dir.path())
            .run(["validate", "--json"])
            .code(1);
        assert!(
            json.stdout.len() < 512 * 1024,
            "{name}: {} bytes of JSON",
            json.stdout.len()
        );
    }
    // What is left out is counted, not dropped silently.
    let dir = project(&wide);
    let run = Mailform::new(dir.path()).run(["validate"]).code(1);
    assert!(
        run.stderr.contains(
            "note: 3950 more not shown (3950 errors, 0 others); fix the ones above and run again"
        ),
        "{}",
        &run.stderr[run.stderr.len().saturating_sub(400)..]
    );
}

#[test]
fn terraform_spellings_get_the_double_dash_answer() {
    let dir = project(CONFIG);
    for (typed, answer) in [
        ("-detailed-exitcode", "did you mean --detailed-exitcode?"),
        ("-out=p.json", "did you mean --out=p.json?"),
        ("-no-color", "did you mean --color never?"),
        ("-offline", "did you mean --offline?"),
    ] {
        let run = mf(dir.path()).run(["plan", typed]).code(1);
        assert!(run.stderr.contains(answer), "{typed}: {}", run.stderr);
    }
    // Short flags are untouched.
    mf(dir.path()).run(["-c", "assets.toml", "validate"]).ok();
}

#[test]
fn init_makes_the_config_folder_and_names_what_to_set_next() {
    let dir = tempfile::tempdir().unwrap();
    let run = Mailform::new(dir.path())
        .run(["-c", "ops/mail/assets.toml", "init"])
        .ok();
    assert!(dir.path().join("ops/mail/assets.toml").is_file());
    assert!(dir.path().join("ops/mail/.mailform/key").is_file());
    assert!(
        run.stderr.contains("  - set GOOGLE_CLIENT_SECRET (provider `google`)")
            && run.stderr.contains("  - set MICROSOFT_CLIENT_SECRET (provider `microsoft`)")
            && run.stderr.contains(
                "  - run `mailform -c ops/mail/assets.toml validate`, then `mailform -c ops/mail/assets.toml plan --offline`"
            ),
        "{}",
        run.stderr
    );
    // Following the advice works: validate passes (noting the unset
    // secrets), and once they are set the offline plan runs.
    let v = Mailform::new(dir.path())
        .run(["-c", "ops/mail/assets.toml", "validate"])
        .ok();
    assert!(v.stderr.contains("note: provider `google`: client_secret: environment variable GOOGLE_CLIENT_SECRET is not set"), "{}", v.stderr);
    Mailform::new(dir.path())
        .env("GOOGLE_CLIENT_SECRET", "x")
        .env("MICROSOFT_CLIENT_SECRET", "y")
        .run(["-c", "ops/mail/assets.toml", "plan", "--offline"])
        .ok();
}

#[test]
fn show_explains_an_asset_that_is_declared_but_not_applied() {
    let dir = project(CONFIG);
    let run = mf(dir.path()).run(["show", "support"]).code(1);
    assert!(
        run.stderr
            .contains("asset `support` is declared in assets.toml (line 12) but not applied yet"),
        "{}",
        run.stderr
    );
    let run = mf(dir.path()).run(["show", "nobody"]).code(1);
    assert!(
        run.stderr.contains("no asset named `nobody`"),
        "{}",
        run.stderr
    );
    // No state: no invented lineage.
    let a = mf(dir.path()).run(["show", "--json"]).ok();
    let doc: serde_json::Value = serde_json::from_str(&a.stdout).unwrap();
    assert_eq!(doc["lineage"], serde_json::Value::Null);
    assert_eq!(doc["serial"], 0);
}

#[test]
fn a_state_without_tokens_needs_no_key() {
    let dir = project(CONFIG);
    mf(dir.path()).run(["init"]).ok();
    std::fs::remove_file(dir.path().join(".mailform/key")).unwrap();
    mf(dir.path()).run(["plan", "--offline"]).ok();
}

#[test]
fn no_color_beats_the_team_file_but_not_the_flag() {
    let text = CONFIG.replace(
        "version = 1\n",
        "version = 1\n[settings]\ncolor = \"always\"\n",
    );
    let dir = project(&text);
    let coloured = mf(dir.path())
        .env_remove("NO_COLOR")
        .run(["plan", "--offline"])
        .ok();
    assert!(
        coloured.stdout.contains("\x1b["),
        "the file's colour applies"
    );
    let plain = mf(dir.path()).run(["plan", "--offline"]).ok();
    assert!(
        !plain.stdout.contains('\x1b'),
        "NO_COLOR wins over the file"
    );
    let flag = mf(dir.path())
        .run(["plan", "--offline", "--color", "always"])
        .ok();
    assert!(flag.stdout.contains("\x1b["), "the flag wins over NO_COLOR");
}

#[test]
fn the_documented_forms_are_accepted() {
    let text = CONFIG
        .replace(
            "version = 1\n",
            "version = 1\n[settings]\nlock_timeout = 30\nparallelism = 300\n",
        )
        .replace("security = \"starttls\"", "security = \"ssl\"")
        .replace("port = 2587", "port = 2465");
    let dir = project(&text);
    mf(dir.path()).run(["validate", "--strict"]).ok();
    mf(dir.path()).run(["plan", "--offline"]).ok();
}

#[test]
fn a_state_of_format_version_zero_is_refused() {
    let dir = project(CONFIG);
    std::fs::create_dir_all(dir.path().join(".mailform")).unwrap();
    std::fs::write(
        dir.path().join(".mailform/state.json"),
        "{\"format_version\": 0, \"lineage\": \"9d0c3c3e-1e35-4f7e-a2f1-6f1d8a0d1b11\", \"serial\": 1}",
    )
    .unwrap();
    let run = mf(dir.path()).run(["plan", "--offline"]).code(1);
    assert!(
        run.stderr
            .contains("format_version 0 is not a mailform state format"),
        "{}",
        run.stderr
    );
}
