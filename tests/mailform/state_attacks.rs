//! `.mailform/` under attack, through the real binary: planted symlinks and
//! FIFOs, a loose umask, another local user, hand-edited or copied sealed
//! tokens, a lost key, a full disk, concurrent inits. Each test reproduces an
//! attack and checks it no longer works. Where the machine does not allow
//! one (not root, no tmpfs), the test says so and skips.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mailform::config;
use mailform::secret::Secret;
use mailform::state::{State, Tokens};
use mailform::store::{FileStore, StateStore as _, key};

use crate::support::fixtures::applied_state;
use crate::support::{Mailform, project};

const CONFIG: &str = concat!(
    crate::support::offline_lab!(public),
    r#"
[assets.support]
email = "support@example.com"
provider = "lab"

[assets.billing]
email = "billing@example.com"
provider = "lab"
"#
);

/// A project whose state holds `access` as every asset's access token.
fn applied(dir: &Path, access: &str) -> State {
    applied_state(dir, CONFIG, |_| Tokens {
        access_token: Secret::new(access),
        refresh_token: Some(Secret::new(format!("{access}-refresh"))),
    })
    .1
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

fn state_json(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join(".mailform/state.json")).unwrap())
        .unwrap()
}

fn write_state_json(dir: &Path, doc: &serde_json::Value) {
    std::fs::write(
        dir.join(".mailform/state.json"),
        serde_json::to_string_pretty(doc).unwrap(),
    )
    .unwrap();
}

#[test]
fn tokens_with_quotes_backslashes_and_control_bytes_still_open() {
    let dir = project(CONFIG);
    applied(dir.path(), "FAKE.\"quoted\"\\back\\slash\u{1}\u{7f}é");
    let run = Mailform::new(dir.path())
        .run(["plan", "--offline", "--detailed-exitcode"])
        .code(0);
    assert!(run.stdout.starts_with("No changes."), "{}", run.stdout);
}

#[test]
fn edited_binding_fields_no_longer_pass_as_unchanged() {
    // The attack: change client_id in the config, then edit the state's
    // applied.client_id and its binding fingerprint to match, so the plan
    // says "No changes" while the old token still opens.
    let dir = project(CONFIG);
    applied(dir.path(), "tok");
    let edited = CONFIG.replace("client_id = \"mailform-test\"", "client_id = \"other\"");
    std::fs::write(dir.path().join("assets.toml"), &edited).unwrap();
    let config = config::parse(&dir.path().join("assets.toml"), edited)
        .config
        .unwrap();
    let mut doc = state_json(dir.path());
    for name in ["support", "billing"] {
        let applied = mailform::plan::applied(&config, &config.assets[name]);
        doc["assets"][name]["applied"]["client_id"] = "other".into();
        doc["assets"][name]["binding"] = applied.binding_fingerprint().into();
    }
    write_state_json(dir.path(), &doc);
    let run = Mailform::new(dir.path())
        .run(["plan", "--offline", "--detailed-exitcode"])
        .code(2);
    assert!(
        run.stdout.contains(
            "! support  re-consent  support@example.com (lab): stored tokens cannot be opened (they were sealed for another state, asset or client"
        ),
        "{}",
        run.stdout
    );
}

#[test]
fn a_sealed_token_copied_from_another_state_does_not_open() {
    let a = project(CONFIG);
    applied(a.path(), "tok-a");
    let b = project(CONFIG);
    applied(b.path(), "tok-b");
    // Same key in both, so only the binding to the lineage can tell.
    std::fs::copy(
        a.path().join(".mailform/key"),
        b.path().join(".mailform/key"),
    )
    .unwrap();
    let mut doc_b = state_json(b.path());
    doc_b["key_id"] = state_json(a.path())["key_id"].clone();
    doc_b["assets"]["support"]["token"] =
        state_json(a.path())["assets"]["support"]["token"].clone();
    doc_b["assets"]["billing"]["token"] =
        state_json(a.path())["assets"]["billing"]["token"].clone();
    write_state_json(b.path(), &doc_b);
    let run = Mailform::new(b.path())
        .run(["plan", "--offline", "--detailed-exitcode"])
        .code(2);
    assert!(
        run.stdout.contains("stored tokens cannot be opened"),
        "{}",
        run.stdout
    );
    // And a token moved between assets of one state does not open either.
    let mut doc = state_json(a.path());
    doc["assets"]["billing"]["token"] = doc["assets"]["support"]["token"].clone();
    write_state_json(a.path(), &doc);
    let run = Mailform::new(a.path()).run(["plan", "--offline"]).ok();
    assert!(
        run.stdout.contains("! billing  re-consent") && !run.stdout.contains("! support"),
        "{}",
        run.stdout
    );
}

#[test]
fn tokens_without_a_key_id_are_refused() {
    let dir = project(CONFIG);
    applied(dir.path(), "tok");
    let mut doc = state_json(dir.path());
    doc.as_object_mut().unwrap().remove("key_id");
    write_state_json(dir.path(), &doc);
    let (_other, text) = mailform::state::crypto::Key::generate();
    let run = Mailform::new(dir.path())
        .env("MAILFORM_KEY", &text)
        .run(["plan", "--offline"])
        .code(1);
    assert!(
        run.stderr.contains("it holds sealed tokens but no key_id"),
        "{}",
        run.stderr
    );
}

#[test]
fn init_with_the_key_lost_makes_no_stray_key() {
    let dir = project(CONFIG);
    let state = applied(dir.path(), "tok");
    std::fs::remove_file(dir.path().join(".mailform/key")).unwrap();
    let run = Mailform::new(dir.path()).run(["init"]).code(1);
    assert!(
        run.stderr.contains(&format!(
            "holds tokens sealed with key id {}, but no key was found",
            state.key_id.unwrap()
        )),
        "{}",
        run.stderr
    );
    assert!(!dir.path().join(".mailform/key").exists(), "no new key");
}

#[test]
fn a_wrong_or_unreadable_mailform_key_is_named_as_such() {
    let dir = project(CONFIG);
    applied(dir.path(), "tok");
    let (_other, text) = mailform::state::crypto::Key::generate();
    let run = Mailform::new(dir.path())
        .env("MAILFORM_KEY", &text)
        .run(["init"])
        .code(1);
    assert!(
        run.stderr.contains("the key (MAILFORM_KEY, id"),
        "blamed on the right source: {}",
        run.stderr
    );
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt as _;
        let out = Command::new(env!("CARGO_BIN_EXE_mailform"))
            .current_dir(dir.path())
            .env("MAILFORM_KEY", std::ffi::OsStr::from_bytes(b"\xff\xfe"))
            .args(["plan", "--offline"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("MAILFORM_KEY is not valid text"),
            "{stderr}"
        );
        let out = Command::new(env!("CARGO_BIN_EXE_mailform"))
            .current_dir(dir.path())
            .env("MAILFORM_KEY", "")
            .args(["plan", "--offline"])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("MAILFORM_KEY is set but empty"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[cfg(unix)]
#[test]
fn planted_symlinks_are_refused_and_never_written_through() {
    let dir = project(CONFIG);
    Mailform::new(dir.path()).run(["init"]).ok();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let lock = dir.path().join(".mailform/state.json.lock");
    std::os::unix::fs::symlink(&victim, &lock).unwrap();
    let run = Mailform::new(dir.path()).run(["init"]).code(1);
    assert!(run.stderr.contains("symbolic link"), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(
        std::fs::symlink_metadata(&lock)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link is left for the user to see, not removed to hide it"
    );

    // A symlinked state folder: refused, nothing written where it points.
    let dir = project(CONFIG);
    let elsewhere = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), dir.path().join(".mailform")).unwrap();
    let run = Mailform::new(dir.path()).run(["init"]).code(1);
    assert!(run.stderr.contains("symbolic link"), "{}", run.stderr);
    assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);

    // A symlinked .gitignore is not written through.
    let dir = project(CONFIG);
    let target = dir.path().join("elsewhere.gitignore");
    std::fs::write(&target, "").unwrap();
    std::os::unix::fs::symlink(&target, dir.path().join(".gitignore")).unwrap();
    let run = Mailform::new(dir.path()).run(["init"]).ok();
    assert!(
        run.stderr
            .contains("Did not touch ./.gitignore: it is a symbolic link"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "");
}

#[cfg(unix)]
#[test]
fn a_loose_umask_still_gives_a_private_folder_and_files() {
    let dir = project(CONFIG);
    let bin = env!("CARGO_BIN_EXE_mailform");
    for _ in 0..2 {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("umask 000; exec '{bin}' init"))
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let m = dir.path().join(".mailform");
    assert_eq!(mode(&m), 0o700);
    assert_eq!(mode(&m.join("key")), 0o600);
    assert_eq!(mode(&m.join("state.json")), 0o600);
    assert!(!m.join("state.json.lock").exists(), "released and removed");
    // The lock file, while held, is 0600 too.
    let store = FileStore::new(m.join("state.json"));
    let _held = store.lock("t", Duration::ZERO, &mut |_| {}).unwrap();
    assert_eq!(mode(store.lock_path()), 0o600);
}

#[cfg(unix)]
#[test]
fn a_state_folder_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = project(CONFIG);
    Mailform::new(dir.path()).run(["init"]).ok();
    let m = dir.path().join(".mailform");
    std::fs::set_permissions(&m, std::fs::Permissions::from_mode(0o777)).unwrap();
    for args in [vec!["init"], vec!["plan", "--offline"], vec!["show"]] {
        let run = Mailform::new(dir.path()).run(&args).code(1);
        assert!(
            run.stderr.contains("writable by others (mode 777)"),
            "{args:?}: {}",
            run.stderr
        );
    }
}

#[cfg(unix)]
#[test]
fn another_users_key_or_folder_is_not_trusted() {
    if !is_root() {
        eprintln!("skipped: changing a file's owner needs root");
        return;
    }
    let dir = project(CONFIG);
    applied(dir.path(), "tok");
    let m = dir.path().join(".mailform");
    std::os::unix::fs::chown(m.join("key"), Some(65534), Some(65534)).unwrap();
    let run = Mailform::new(dir.path()).run(["plan", "--offline"]).code(1);
    assert!(
        run.stderr.contains("belongs to another user (uid 65534)"),
        "{}",
        run.stderr
    );
    std::os::unix::fs::chown(m.join("key"), Some(0), Some(0)).unwrap();
    std::os::unix::fs::chown(&m, Some(65534), Some(65534)).unwrap();
    let run = Mailform::new(dir.path()).run(["plan", "--offline"]).code(1);
    assert!(
        run.stderr.contains("belongs to another user (uid 65534)"),
        "{}",
        run.stderr
    );
}

/// The reported attack: as `nobody`, with a world-writable `.mailform`, a
/// symlink planted at the lock path made a locking command clobber a
/// root-owned file.
#[cfg(unix)]
#[test]
fn a_second_local_user_cannot_clobber_files_through_the_state_folder() {
    use std::os::unix::fs::PermissionsExt as _;
    if !is_root() || Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped: needs root and setpriv to act as a second user");
        return;
    }
    let dir = project(CONFIG);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        dir.path().join("assets.toml"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    // A project as root keeps it: config and schema readable by all.
    std::fs::create_dir(dir.path().join("schemas")).unwrap();
    std::fs::write(dir.path().join("schemas/assets.schema.json"), "{}").unwrap();
    let m = dir.path().join(".mailform");
    std::fs::create_dir(&m).unwrap();
    std::fs::set_permissions(&m, std::fs::Permissions::from_mode(0o777)).unwrap();
    let victim = dir.path().join("root-secret");
    std::fs::write(&victim, "precious").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(&victim, m.join("state.json.lock")).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_mailform"))
        .arg("init")
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("refusing"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    // And root, meeting the same folder, refuses it too.
    let run = Mailform::new(dir.path()).run(["init"]).code(1);
    assert!(run.stderr.contains("writable by others"), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
}

#[cfg(unix)]
#[test]
fn a_fifo_in_place_of_the_state_is_refused_without_hanging() {
    let dir = project(CONFIG);
    Mailform::new(dir.path()).run(["init"]).ok();
    let state = dir.path().join(".mailform/state.json");
    std::fs::remove_file(&state).unwrap();
    assert!(
        Command::new("mkfifo")
            .arg(&state)
            .status()
            .unwrap()
            .success()
    );
    for args in [["plan", "--offline"], ["init", "--color=never"]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mailform"))
            .args(args)
            .current_dir(dir.path())
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        // A guard against a hang, not a speed test: a blocked open never ends.
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!("{args:?} blocked on the FIFO");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("not a regular file"), "{stderr}");
    }
}

#[test]
fn concurrent_inits_agree_on_one_state_and_one_key() {
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let children: Vec<_> = (0..4)
            .map(|_| {
                Command::new(env!("CARGO_BIN_EXE_mailform"))
                    .args(["init", "--lock-timeout", "30s"])
                    .current_dir(dir.path())
                    .env("NO_COLOR", "1")
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let state = crate::support::fixtures::stored_state(dir.path());
        let (key, _) = key::load(&dir.path().join(".mailform")).unwrap().unwrap();
        assert_eq!(state.key_id.as_deref(), Some(key.id()));
        assert_eq!(state.serial, 1, "one init created it, the others kept it");
    }
}

#[test]
fn git_is_asked_whether_the_key_is_really_ignored() {
    if Command::new("git").arg("--version").output().is_err() {
        eprintln!("skipped: git is not installed");
        return;
    }
    let git = |dir: &Path, args: &[&str]| {
        assert!(
            Command::new("git")
                .args(args)
                .current_dir(dir)
                .output()
                .unwrap()
                .status
                .success()
        );
    };
    let dir = project(CONFIG);
    git(dir.path(), &["init", "-q"]);
    let run = Mailform::new(dir.path()).run(["init"]).ok();
    assert!(
        run.stderr.contains("Added /.mailform/ to"),
        "{}",
        run.stderr
    );
    for f in [".mailform/key", ".mailform/state.json"] {
        git(dir.path(), &["check-ignore", "-q", f]);
    }
    // A later rule that un-ignores the folder: init says git would commit the key.
    let dir = project(CONFIG);
    git(dir.path(), &["init", "-q"]);
    std::fs::write(dir.path().join(".gitignore"), "/.mailform/\n!/.mailform/\n").unwrap();
    let run = Mailform::new(dir.path()).run(["init"]).code(1);
    assert!(
        run.stderr.contains("git would commit ./.mailform/key"),
        "{}",
        run.stderr
    );
}

#[cfg(unix)]
#[test]
fn a_secret_file_others_can_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt as _;
    let text = CONFIG.replace(
        "client_id = \"mailform-test\"\n",
        "client_id = \"mailform-test\"\nclient_secret = { file = \"secret.txt\" }\n",
    );
    let dir = project(&text);
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "s3cr3t-SENTINEL\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = Mailform::new(dir.path())
        .run(["validate", "--strict"])
        .code(1);
    assert!(
        run.stderr
            .contains("`secret.txt` is readable by others (mode 644)"),
        "{}",
        run.stderr
    );
    assert!(!run.all().contains("SENTINEL"));
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    Mailform::new(dir.path()).run(["validate", "--strict"]).ok();
}

/// Unmounts a test's tmpfs when the test ends, however it ends.
#[cfg(target_os = "linux")]
struct Unmount<'a>(&'a Path);

#[cfg(target_os = "linux")]
impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

/// Key creation on a full disk leaves no empty key behind (which used to
/// break every later init).
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_leaves_no_empty_key() {
    let mnt = tempfile::tempdir().unwrap();
    let mounted = is_root()
        && Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(mnt.path())
            .status()
            .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot mount a small tmpfs here (needs root and mount rights)");
        return;
    }
    let _unmount = Unmount(mnt.path());
    let state_dir = mnt.path().join(".mailform");
    std::fs::create_dir(&state_dir).unwrap();
    // Fill the disk.
    let filler = mnt.path().join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 128 * 1024]);
    let err = key::create(&state_dir).unwrap_err();
    assert!(err.to_string().contains("key"), "{err}");
    assert!(!state_dir.join("key").exists(), "no empty key left behind");
    assert_eq!(
        std::fs::read_dir(&state_dir).unwrap().count(),
        0,
        "no temp file left behind"
    );
    std::fs::remove_file(&filler).unwrap();
    key::create(&state_dir).unwrap();
    assert!(key::load(&state_dir).unwrap().is_some());
}

/// A teammate who can write the shared state plants terminal escapes and
/// Unicode format characters in it: `show` and `plan` print them escaped.
#[test]
fn hostile_strings_in_state_never_reach_the_terminal_raw() {
    let dir = project(CONFIG);
    let mut state = applied(dir.path(), "FAKE-hostile-strings-token");
    let record = state.assets.get_mut("support").unwrap();
    record.applied.email = "support@example.com\u{1b}]52;c;cHduZWQ=\u{7}".into();
    record.applied.client_id = "mailform-test\u{1b}[2J".into();
    record.applied.scopes = vec!["mail\u{202e}liam".into(), "offline_access".into()];
    record.applied.smtp_host = "smtp\u{200b}.example".into();
    record
        .applied
        .labels
        .insert("team\u{1b}[31m".into(), "care\u{2066}".into());
    record.token.as_mut().unwrap().granted_scopes = vec!["mail\u{1b}[8m".into()];
    FileStore::new(dir.path().join(".mailform/state.json"))
        .save(&mut state)
        .unwrap();
    let raw = |s: &str| {
        s.contains('\u{1b}')
            || s.contains('\u{7}')
            || s.contains('\u{202e}')
            || s.contains('\u{200b}')
            || s.contains('\u{2066}')
    };
    for args in [
        vec!["show"],
        vec!["show", "support"],
        vec!["plan", "--offline"],
        vec!["--color", "always", "plan", "--offline"],
    ] {
        let run = Mailform::new(dir.path()).run(&args);
        if args[0] != "--color" {
            assert!(
                !raw(&run.all()),
                "{args:?} printed a raw escape:\n{:?}",
                run.all()
            );
        }
        // With colour on, mailform's own styles are the only escapes: none
        // of the planted sequences survives.
        for planted in [
            "\u{1b}]52",
            "\u{1b}[2J",
            "\u{202e}",
            "\u{200b}",
            "\u{1b}[8m",
            "\u{2066}",
            "\u{7}",
        ] {
            assert!(
                !run.all().contains(planted),
                "{args:?} printed {planted:?}:\n{:?}",
                run.all()
            );
        }
    }
    let show = Mailform::new(dir.path()).run(["show"]).ok();
    assert!(
        show.stdout.contains("mail\\u{202e}liam")
            && show.stdout.contains("mailform-test\\u{1b}[2J"),
        "{}",
        show.stdout
    );
}

/// A stored access token that is no RFC 6750 bearer token (as a hostile or
/// broken provider could have issued before it was refused at the grant)
/// is never printed by `token`.
#[test]
fn token_never_prints_a_token_a_bearer_header_cannot_carry() {
    let dir = project(CONFIG);
    applied(dir.path(), "FAKE-ok\u{1b}]0;owned\u{7} user=root");
    let run = Mailform::new(dir.path()).run(["token", "support"]).code(1);
    assert!(run.stdout.is_empty(), "{:?}", run.stdout);
    assert!(
        run.stderr.contains("characters a bearer token cannot have"),
        "{}",
        run.stderr
    );
}
