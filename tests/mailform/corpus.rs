//! Every bad file under tests/bad has the exact message users will see.
//!
//! `tests/bad/NAME.toml` is run as `mailform -c NAME.toml validate` (or the
//! command named on a `# command:` first line) from tests/bad; its stderr must
//! equal `NAME.stderr`, stdout must be empty and the exit code 1; and no
//! output may contain `SENTINEL`, which the files plant where secrets go. To update
//! after a deliberate wording change: `UPDATE_EXPECT=1 cargo test corpus`.

use crate::support::{Mailform, root};

#[test]
fn every_bad_config_fails_with_its_exact_message() {
    let dir = root().join("tests/bad");
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 65, "the corpus has {} files", cases.len());
    crate::support::private_fixtures();
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let text = String::from_utf8_lossy(&std::fs::read(case).unwrap()).into_owned();
        let command = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# command: "))
            .unwrap_or("validate");
        let mut args = vec!["-c", &name];
        args.extend(command.split_whitespace());
        let run = Mailform::new(&dir).run(&args);
        let expected_path = case.with_extension("stderr");
        if update {
            std::fs::write(&expected_path, &run.stderr).unwrap();
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if run.code != 1
            || !run.stdout.is_empty()
            || run.stderr != expected
            || run.stderr.contains("panicked")
            || run.stderr.contains("SENTINEL")
        {
            failures.push(format!(
                "{name}: exit {} (want 1)\n--- stdout\n{}--- stderr\n{}--- expected stderr\n{}",
                run.code, run.stdout, run.stderr, expected
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_literal_secret_is_never_echoed() {
    let run = Mailform::new(&root().join("tests/bad"))
        .run(["-c", "literal_secret.toml", "validate"])
        .code(1);
    assert!(!run.all().contains("hunter2"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("client_secret = \"********************\""),
        "{}",
        run.stderr
    );
}
