use super::*;

fn store() -> (tempfile::TempDir, FileStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path().join(".mailform/state.json"));
    (dir, store)
}

#[allow(clippy::unnecessary_wraps)] // reason: it has the confirm callback's signature
fn yes(_: &LockInfo) -> Result<bool, Error> {
    Ok(true)
}

#[test]
fn missing_state_loads_as_none_and_save_bumps_serial() {
    let (_dir, store) = store();
    assert!(store.load().unwrap().is_none());
    let mut state = State::new();
    store.save(&mut state).unwrap();
    store.save(&mut state).unwrap();
    let back = store.load().unwrap().unwrap();
    assert_eq!(back.serial, 2);
    assert_eq!(back.lineage, state.lineage);
}

fn with_assets(n: usize) -> State {
    let mut state = State::new();
    for i in 0..n {
        state.insert_applied(
            &format!("box-{i}"),
            crate::state::tests::applied(),
            None,
            chrono::Utc::now(),
        );
    }
    state
}

#[test]
fn recorded_assets_are_replayed_on_load_and_folded_by_the_next_save() {
    let (_dir, store) = store();
    let mut state = with_assets(3);
    // The first write of a state is a whole file.
    store.record(&mut state, &["box-0"]).unwrap();
    assert_eq!(state.serial, 1);
    assert!(!store.journal_path().exists());
    state.assets.remove("box-1");
    store.record(&mut state, &["box-1"]).unwrap();
    state.assets.get_mut("box-2").unwrap().binding = "changed".into();
    // A first consent names the key; the journal carries that too.
    state.key_id = Some("key-1".into());
    store.record(&mut state, &["box-2"]).unwrap();
    assert_eq!(state.serial, 1, "journaling does not rewrite the state");
    let back = store.load().unwrap().unwrap();
    assert_eq!(back, state);
    // A save folds the journal in and removes it.
    let mut back = back;
    store.save(&mut back).unwrap();
    assert!(!store.journal_path().exists());
    assert_eq!(store.load().unwrap().unwrap().assets, state.assets);
}

#[test]
fn a_torn_last_line_is_ignored_and_a_stale_journal_too() {
    let (_dir, store) = store();
    let mut state = with_assets(2);
    store.save(&mut state).unwrap();
    state.assets.remove("box-0");
    store.record(&mut state, &["box-0"]).unwrap();
    // A crash mid-append: half a line.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(store.journal_path())
        .unwrap();
    // (a whole line without its newline counts as torn, too)
    f.write_all(b"{\"lineage\":\"").unwrap();
    drop(f);
    let back = store.load().unwrap().unwrap();
    assert!(!back.assets.contains_key("box-0"));
    // The next line still lands whole after the torn one.
    state.assets.remove("box-1");
    store.record(&mut state, &["box-1"]).unwrap();
    assert!(store.load().unwrap().unwrap().assets.is_empty());
    // A journal for an older serial (its removal failed) is ignored.
    let journal = std::fs::read(store.journal_path()).unwrap();
    let mut fresh = with_assets(2);
    fresh.lineage = state.lineage;
    fresh.serial = state.serial;
    std::fs::remove_file(store.journal_path()).unwrap();
    store.save(&mut fresh).unwrap();
    std::fs::write(store.journal_path(), journal).unwrap();
    assert_eq!(store.load().unwrap().unwrap().assets.len(), 2);
}

#[test]
fn a_corrupt_or_planted_journal_is_refused() {
    let (_dir, store) = store();
    let mut state = with_assets(1);
    store.save(&mut state).unwrap();
    std::fs::write(store.journal_path(), "not json\n{}\n").unwrap();
    assert!(matches!(store.load(), Err(Error::StateCorrupt { .. })));
    std::fs::remove_file(store.journal_path()).unwrap();
    #[cfg(unix)]
    {
        let target = store.dir().join("elsewhere");
        std::fs::write(&target, "").unwrap();
        std::os::unix::fs::symlink(&target, store.journal_path()).unwrap();
        assert!(matches!(
            store.record(&mut state, &["box-0"]),
            Err(Error::StateUnsafe { .. })
        ));
        assert!(matches!(store.load(), Err(Error::StateUnsafe { .. })));
        assert_eq!(std::fs::read(&target).unwrap(), b"");
    }
}

#[test]
fn journaling_n_assets_writes_o_n_bytes() {
    let bytes_for = |n: usize| {
        let (_dir, store) = store();
        let mut state = with_assets(n);
        store.save(&mut state).unwrap();
        for i in 0..n {
            state.assets.get_mut(&format!("box-{i}")).unwrap().binding = format!("b{i}");
            store
                .record(&mut state, &[format!("box-{i}").as_str()])
                .unwrap();
        }
        store.save(&mut state).unwrap();
        store.written().1
    };
    let (small, large) = (bytes_for(20), bytes_for(2000));
    // 100× the assets: about 100× the bytes (rewriting the file after
    // each asset would be 10,000×).
    let ratio = large / small.max(1);
    assert!(ratio < 150, "{small} → {large} bytes: {ratio}×");
}

#[cfg(unix)]
#[test]
fn state_folder_and_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let (_dir, store) = store();
    store.save(&mut State::new()).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(store.path()), 0o600);
    assert_eq!(mode(store.dir()), 0o700);
}

#[test]
fn corrupt_and_newer_files_are_refused_and_left_alone() {
    let (_dir, store) = store();
    store.prepare_dir().unwrap();
    std::fs::write(store.path(), "{ not json").unwrap();
    assert!(matches!(store.load(), Err(Error::StateCorrupt { .. })));
    let newer = r#"{"format_version": 99, "lineage": "x", "serial": 1}"#;
    std::fs::write(store.path(), newer).unwrap();
    let err = store.load().unwrap_err();
    assert!(matches!(err, Error::StateTooNew { found: 99, .. }), "{err}");
    assert_eq!(std::fs::read_to_string(store.path()).unwrap(), newer);
}

#[test]
fn a_write_is_a_compare_and_swap_on_lineage_and_serial() {
    let (_dir, store) = store();
    let mut first = State::new();
    store.save(&mut first).unwrap();
    let mut a = store.load().unwrap().unwrap();
    let mut b = store.load().unwrap().unwrap();
    store.save(&mut a).unwrap();
    let err = store.save(&mut b).unwrap_err();
    assert!(
        err.to_string()
            .contains("changed since it was read (serial 1, now 2)"),
        "{err}"
    );
    assert_eq!(b.serial, 1, "a refused save leaves the caller's serial");
    // Another lineage, or a brand-new state over an existing file.
    assert!(matches!(
        store.save(&mut State::new()),
        Err(Error::StateMoved { .. })
    ));
    assert_eq!(store.load().unwrap().unwrap().serial, 2);
}

#[test]
fn every_save_keeps_the_previous_state_as_a_backup() {
    let (_dir, store) = store();
    let mut state = State::new();
    store.save(&mut state).unwrap();
    assert!(!store.backup_path().exists());
    let first = std::fs::read(store.path()).unwrap();
    store.save(&mut state).unwrap();
    assert_eq!(std::fs::read(store.backup_path()).unwrap(), first);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(store.backup_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn second_lock_waits_then_names_the_holder() {
    let (_dir, store) = store();
    let held = store.lock("apply", Duration::ZERO, &mut |_| {}).unwrap();
    let mut seen = None;
    let Err(err) = store.lock("plan", Duration::from_millis(120), &mut |i| {
        seen = Some(i.clone());
    }) else {
        panic!("second lock must fail")
    };
    assert_eq!(seen.as_ref(), Some(held.info()));
    let Error::Locked { info } = &err else {
        panic!("{err}")
    };
    assert_eq!(info, held.info());
    assert!(err.to_string().contains(&held.info().id));
    assert!(
        err.to_string()
            .contains("a lock left by a mailform that died is taken over automatically"),
        "{err}"
    );
    drop(held);
    let next = store.lock("plan", Duration::ZERO, &mut |_| {}).unwrap();
    assert!(
        next.taken_over().is_none(),
        "a clean release leaves nothing"
    );
}

#[test]
fn a_live_lock_is_never_force_unlocked() {
    let (_dir, store) = store();
    let held = store.lock("apply", Duration::ZERO, &mut |_| {}).unwrap();
    let id = held.info().id.clone();
    let err = store.force_unlock(&id, &mut yes).unwrap_err();
    assert!(matches!(err, Error::LockLive { .. }), "{err}");
    assert!(store.lock_path().exists());
    drop(held);
    assert!(matches!(
        store.force_unlock(&id, &mut yes),
        Err(Error::NotLocked { .. })
    ));
}

#[test]
fn a_dead_holders_lock_file_is_taken_over_or_force_unlocked() {
    let (_dir, store) = store();
    store.prepare_dir().unwrap();
    let dead = LockInfo::new("apply");
    std::fs::write(store.lock_path(), serde_json::to_vec(&dead).unwrap()).unwrap();
    assert!(matches!(
        store.force_unlock("nope", &mut yes),
        Err(Error::LockIdMismatch { .. })
    ));
    assert!(matches!(
        store.force_unlock(&dead.id, &mut |_| Ok(false)),
        Err(Error::Usage(_))
    ));
    assert!(
        store.lock_path().exists(),
        "a refused confirmation removes nothing"
    );
    {
        let next = store.lock("plan", Duration::ZERO, &mut |_| {}).unwrap();
        assert_eq!(next.taken_over(), Some(&dead));
    }
    std::fs::write(store.lock_path(), serde_json::to_vec(&dead).unwrap()).unwrap();
    assert_eq!(store.force_unlock(&dead.id, &mut yes).unwrap(), dead);
    assert!(!store.lock_path().exists());
}

#[test]
fn two_writers_never_overlap() {
    // Each thread takes the lock, reads, bumps, writes: with the lock and
    // the compare-and-swap, no increment is lost.
    let (_dir, store) = store();
    store.save(&mut State::new()).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let _lock = store
                        .lock("test", Duration::from_secs(30), &mut |_| {})
                        .unwrap();
                    let mut s = store.load().unwrap().unwrap();
                    store.save(&mut s).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(store.load().unwrap().unwrap().serial, 201);
}

#[cfg(unix)]
#[test]
fn planted_symlinks_are_refused_and_their_targets_untouched() {
    let (dir, store) = store();
    store.prepare_dir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    std::os::unix::fs::symlink(&victim, store.lock_path()).unwrap();
    let err = store
        .lock("init", Duration::ZERO, &mut |_| {})
        .err()
        .unwrap();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    std::fs::remove_file(store.lock_path()).unwrap();
    std::os::unix::fs::symlink(&victim, store.path()).unwrap();
    assert!(
        store
            .load()
            .unwrap_err()
            .to_string()
            .contains("symbolic link")
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");

    // A symlinked state folder is refused too.
    let elsewhere = tempfile::tempdir().unwrap();
    let linked = dir.path().join("linked");
    std::os::unix::fs::symlink(elsewhere.path(), &linked).unwrap();
    let store = FileStore::new(linked.join("state.json"));
    assert!(
        store
            .save(&mut State::new())
            .unwrap_err()
            .to_string()
            .contains("symbolic link")
    );
    assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
}

#[cfg(unix)]
#[test]
fn a_folder_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let (_dir, store) = store();
    store.save(&mut State::new()).unwrap();
    std::fs::set_permissions(store.dir(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = store.load().unwrap_err();
    assert!(
        err.to_string().contains("writable by others (mode 777)"),
        "{err}"
    );
}
