//! The sandbox's command line, and a real run of it where bubblewrap is installed.

use super::*;

fn sandbox(root: &Path) -> Sandbox {
    let hidden_dir = root.join("work");
    let hidden_file = root.join("config.toml");
    std::fs::create_dir_all(hidden_dir.join("jobs/other")).unwrap();
    std::fs::write(hidden_dir.join("jobs/other/secret"), "other job").unwrap();
    std::fs::write(&hidden_file, "password = 'x'").unwrap();
    Sandbox {
        mechanism: Mechanism::Bubblewrap,
        bwrap: PathBuf::from("bwrap"),
        hidden_dirs: vec![hidden_dir],
        hidden_files: vec![hidden_file],
        writable: Vec::new(),
        run_as: (crate::sys::effective_uid() == 0).then_some((65534, 65534)),
    }
}

#[test]
fn the_own_directories_are_bound_after_the_hidden_ones_are_emptied_and_before_they_are_sealed() {
    let tmp = tempfile::tempdir().unwrap();
    let s = sandbox(tmp.path());
    let own = tmp.path().join("work/jobs/mine");
    let args: Vec<String> = bwrap::args(&s, &own, std::slice::from_ref(&own))
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let at = |flag: &str, path: &Path| {
        args.windows(2)
            .position(|w| w[0] == flag && w[1] == path.to_string_lossy())
            .unwrap_or_else(|| panic!("{flag} {} missing: {args:?}", path.display()))
    };
    let work = tmp.path().join("work");
    assert!(at("--tmpfs", &work) < at("--bind", &own));
    assert!(at("--bind", &own) < at("--remount-ro", &work));
    assert!(args.contains(&"--unshare-pid".to_owned()));
    assert!(args.contains(&"--die-with-parent".to_owned()));
    assert!(!args
        .iter()
        .any(|a| a == "--unshare-net" || a == "--share-net"));
}

/// Runs `script` in the sandbox and returns its stdout, or `None` when bubblewrap cannot run
/// here (then the test says it is skipped).
async fn run_inside(s: &Sandbox, own: &Path, script: &str) -> Option<String> {
    if s.probe().await.is_err() {
        eprintln!("sandbox: skipped (bubblewrap cannot run here)");
        return None;
    }
    let out = s
        .command(
            "/bin/sh",
            &["-c".to_owned(), script.to_owned()],
            own,
            &[own.to_path_buf()],
        )
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .await
        .unwrap();
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test]
async fn inside_only_the_jobs_own_directory_is_writable_and_the_hidden_ones_are_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let s = sandbox(tmp.path());
    let own = tmp.path().join("work/jobs/mine");
    std::fs::create_dir_all(&own).unwrap();
    // The test's temporary directory is private to its owner, like a worker's work dir parent.
    if let Some((uid, gid)) = s.run_as {
        for dir in [
            tmp.path(),
            &tmp.path().join("work"),
            &tmp.path().join("work/jobs"),
            &own,
        ] {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid)).unwrap();
        }
    }
    let script = format!(
        "echo mine > {own}/made && echo wrote-own; \
         cat {work}/jobs/other/secret 2>/dev/null && echo read-other; \
         echo x > {work}/jobs/planted 2>/dev/null && echo wrote-hidden; \
         cat {config} | grep -q password && echo read-config; \
         echo x > /etc/planted 2>/dev/null && echo wrote-root; \
         ls /proc | grep -c '^[0-9]'",
        own = own.display(),
        work = tmp.path().join("work").display(),
        config = tmp.path().join("config.toml").display()
    );
    let Some(out) = run_inside(&s, &own, &script).await else {
        return;
    };
    assert!(out.contains("wrote-own"), "{out}");
    assert!(own.join("made").exists());
    for denied in ["read-other", "wrote-hidden", "read-config", "wrote-root"] {
        assert!(!out.contains(denied), "{denied}: {out}");
    }
    assert!(!tmp.path().join("work/jobs/planted").exists());
    let processes: usize = out.lines().last().unwrap().trim().parse().unwrap();
    assert!(
        processes <= 4,
        "the agent sees only its own processes: {out}"
    );
}

#[tokio::test]
async fn required_without_bubblewrap_is_an_error_naming_it_and_auto_falls_back_to_none() {
    let mut config = Config::default();
    config.sandbox.bwrap = "/nonexistent/bwrap".into();
    config.sandbox.mode = "required".into();
    let err = Sandbox::detect(&config).await.unwrap_err().to_string();
    assert!(err.contains("\"required\""), "{err}");
    assert!(err.contains("cannot run /nonexistent/bwrap"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");

    config.sandbox.mode = "auto".into();
    let auto = Sandbox::detect(&config).await.unwrap();
    assert_eq!(auto.mechanism(), Mechanism::None);
    // Even unconfined, a root worker's agents do not run as root.
    assert_eq!(auto.run_as().is_some(), crate::sys::effective_uid() == 0);

    config.sandbox.mode = "off".into();
    let off = Sandbox::detect(&config).await.unwrap();
    assert_eq!(off.mechanism(), Mechanism::None);
    assert_eq!(off.run_as(), None, "off runs agents as today");
}

#[test]
fn a_hidden_file_inside_a_writable_directory_stays_hidden() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = sandbox(tmp.path());
    let cache = tmp.path().to_path_buf();
    s.writable = vec![cache.clone()];
    let own = tmp.path().join("work/jobs/mine");
    let args: Vec<String> = bwrap::args(&s, &own, std::slice::from_ref(&own))
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let config = tmp.path().join("config.toml").display().to_string();
    let bind_cache = args
        .windows(3)
        .position(|w| w[0] == "--bind" && w[1] == cache.display().to_string())
        .unwrap();
    let hide_config = args
        .windows(3)
        .position(|w| w[0] == "--ro-bind" && w[1] == "/dev/null" && w[2] == config)
        .unwrap();
    assert!(bind_cache < hide_config, "{args:?}");
    let work = tmp.path().join("work").display().to_string();
    let rehide = args
        .windows(2)
        .rposition(|w| w[0] == "--tmpfs" && w[1] == work)
        .unwrap();
    assert!(
        bind_cache < rehide,
        "the work dir inside the cache is hidden again: {args:?}"
    );
    let bind_own = args
        .windows(2)
        .position(|w| w[0] == "--bind" && w[1] == own.display().to_string())
        .unwrap();
    assert!(
        rehide < bind_own,
        "the job's own dir stays visible: {args:?}"
    );
}

#[tokio::test]
async fn a_job_inside_a_work_dir_inside_a_writable_cache_sees_its_own_dir_and_nothing_else() {
    // The one-shot `run` with its scratch directory writable and the work dir inside it.
    let tmp = tempfile::tempdir().unwrap();
    let mut s = sandbox(tmp.path());
    s.writable = vec![tmp.path().to_path_buf()];
    let own = tmp.path().join("work/jobs/mine");
    std::fs::create_dir_all(&own).unwrap();
    std::fs::write(own.join("file"), "mine").unwrap();
    if s.run_as.is_some() {
        s.hand_over(std::slice::from_ref(&own), &[tmp.path().join("work")])
            .unwrap();
        crate::sandbox::owner::make_traversable(tmp.path()).unwrap();
    }
    let Some(out) = run_inside(
        &s,
        &own,
        "cat file; echo; ls ../ | tr '\\n' ' '; echo; cat ../other/secret 2>&1 | head -c 20",
    )
    .await
    else {
        return;
    };
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"mine"), "{out}");
    assert_eq!(
        lines.get(1).map(|l| l.trim()),
        Some("mine"),
        "only its own dir: {out}"
    );
    assert!(!out.contains("other job"), "{out}");
}

#[tokio::test]
async fn a_work_dir_that_does_not_exist_yet_is_made_and_hidden() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("not/yet");
    let mut config = Config::default();
    config.worker.work_dir = work.display().to_string();
    let Ok(s) = Sandbox::detect(&config).await else {
        panic!("auto never refuses");
    };
    assert!(work.is_dir());
    if s.mechanism() == Mechanism::Bubblewrap {
        assert_eq!(s.hidden_dirs.first(), Some(&work), "{:?}", s.hidden_dirs);
    }
}

#[tokio::test]
async fn a_hidden_or_writable_path_behind_a_symlink_does_not_cost_the_sandbox() {
    // As `/var/run/docker.sock` is `/run/docker.sock` behind the `/var/run -> /run` link:
    // bubblewrap cannot mount at a path whose symlink leads out of its new root. Not under
    // /tmp, which the sandbox replaces with an empty one, symlinks and all.
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let run = tmp.path().join("run");
    std::fs::create_dir(&run).unwrap();
    std::os::unix::fs::symlink(&run, tmp.path().join("var-run")).unwrap();
    let socket = std::os::unix::net::UnixListener::bind(run.join("docker.sock")).unwrap();
    let cache = run.join("cache");
    std::fs::create_dir(&cache).unwrap();
    let mut config = Config::default();
    config.worker.work_dir = tmp.path().join("work").display().to_string();
    config.sandbox.hidden = vec![
        tmp.path().join("var-run/docker.sock").display().to_string(),
        run.join("docker.sock").display().to_string(),
    ];
    config.sandbox.writable = vec![tmp.path().join("var-run/cache").display().to_string()];
    let plain = sandbox(tmp.path());
    if plain.probe().await.is_err() {
        eprintln!("sandbox: skipped (bubblewrap cannot run here)");
        return;
    }
    let Ok(s) = Sandbox::detect(&config).await else {
        panic!("auto never refuses");
    };
    assert_eq!(s.mechanism(), Mechanism::Bubblewrap);
    assert_eq!(
        s.hidden_files,
        vec![run.join("docker.sock")],
        "named once, resolved"
    );
    assert_eq!(s.writable, vec![cache]);
    drop(socket);
}

#[test]
fn a_signal_death_reported_by_bubblewrap_as_128_plus_n_is_read_back_as_the_signal() {
    use std::os::unix::process::ExitStatusExt;
    let tmp = tempfile::tempdir().unwrap();
    let s = sandbox(tmp.path());
    let exited = |code: i32| std::process::ExitStatus::from_raw(code << 8);
    assert_eq!(s.unwrap_status(exited(137)).signal(), Some(9));
    assert_eq!(s.unwrap_status(exited(1)).code(), Some(1));
    assert_eq!(Sandbox::none().unwrap_status(exited(137)).code(), Some(137));
}

#[test]
fn a_refusal_names_the_fix_for_what_actually_failed() {
    let text = |why: &str| SandboxError::Unavailable(why.into()).to_string();
    assert!(text(
        "bwrap failed: bwrap: Can't mount proc on /newroot/proc: Operation not permitted"
    )
    .contains("procMount: Unmasked"));
    assert!(
        text("bwrap failed: bwrap: No permissions to create new namespace, likely because")
            .contains("unprivileged user namespaces are refused")
    );
    assert!(
        text("bwrap failed: bwrap: setting up uid map: Operation not permitted")
            .contains("a capability the sandbox needs was dropped")
    );
    assert!(
        text("cannot run /nonexistent/bwrap: No such file or directory (os error 2)")
            .contains("install bubblewrap")
    );
}
