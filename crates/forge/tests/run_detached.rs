//! Detached containers: their monitors, ports forwarded into private network
//! namespaces, and docker's lifecycle commands (ps, stop, start, restart, kill, logs,
//! exec, pause, unpause, stats, rm, commit) with assertions on state and output.

#[path = "support/build.rs"]
mod build_support;
#[path = "run_support/mod.rs"]
mod run_support;
mod support;

use std::fs;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use run_support::*;
use support::{ok, run};

#[test]
fn httpd_serves_through_forwarded_ports() {
    let (tmp, root) = store_with_busybox("run-httpd");
    build_web(tmp.path(), &root);
    let (p1, p2) = (free_port(), free_port());
    let spec1 = format!("127.0.0.1:{p1}:80");
    let spec2 = format!("127.0.0.1:{p2}:80");
    // Two containers, both listening on port 80 in their own namespaces.
    let id1 = ok(
        &root,
        &["run", "-d", "--name", "web1", "-p", &spec1, "web:1"],
    );
    let id2 = ok(
        &root,
        &["run", "-d", "--name", "web2", "-p", &spec2, "web:1"],
    );
    assert_eq!(id1.trim().len(), 64);
    assert_ne!(id1, id2);
    for port in [p1, p2] {
        let body = http_get(port);
        assert!(
            body.starts_with("HTTP/1.") && body.contains("hello-from-web"),
            "{body}"
        );
    }
    let web1 = ps_entry(&root, "web1");
    assert_eq!(web1["State"], "running");
    assert_eq!(web1["Ports"], format!("127.0.0.1:{p1}->80/tcp"));
    let table = ok(&root, &["ps"]);
    let header = table.lines().next().expect("header");
    for col in [
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ] {
        assert!(header.contains(col), "{header}");
    }
    assert!(
        table.contains(&format!("127.0.0.1:{p2}->80/tcp")),
        "{table}"
    );
    // httpd's access log went to the container's log.
    wait_until(5, "httpd's log line", || {
        ok(&root, &["logs", "web1"]).contains("response:200")
            || run(&root, &["logs", "web1"])
                .stderr
                .contains("response:200")
    });

    // A host port in use: a clear error, and nothing runs.
    let (_, err) = expect_code(
        &root,
        &["run", "-d", "--name", "web3", "-p", &spec1, "web:1"],
        125,
    );
    assert!(
        err.contains(&format!("127.0.0.1:{p1}")) && err.contains("in use"),
        "{err}"
    );
    assert_ne!(ps_entry(&root, "web3")["State"], "running");

    // -P publishes the image's EXPOSEd port on a free host port.
    ok(&root, &["run", "-d", "--name", "web4", "-P", "web:1"]);
    let ports = ps_entry(&root, "web4")["Ports"]
        .as_str()
        .expect("ports")
        .to_owned();
    let host_port: u16 = ports
        .split("->")
        .next()
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("a host port in {ports}"));
    assert!(ports.ends_with("->80/tcp"), "{ports}");
    assert!(http_get(host_port).contains("hello-from-web"));

    ok(&root, &["rm", "-f", "web1", "web2", "web3", "web4"]);
    assert!(ps_json(&root).is_empty());
    // The host ports are free again.
    for port in [p1, p2, host_port] {
        TcpListener::bind(("127.0.0.1", port)).expect("host port released");
    }
}

#[test]
fn lifecycle_commands_behave_as_docker() {
    let (_tmp, root) = store_with_busybox("run-life");
    let script = "echo started; trap 'echo got-term; exit 143' TERM; \
                  while true; do sleep 0.1; done";
    ok(
        &root,
        &["run", "-d", "--name", "life", "busybox", "sh", "-c", script],
    );
    let id = container_id(&root, "life");
    let e = ps_entry(&root, "life");
    assert_eq!(e["State"], "running");
    assert!(
        e["Status"].as_str().expect("status").starts_with("Up "),
        "{e}"
    );
    assert_eq!(ok(&root, &["ps", "-q"]).trim(), &id[..12]);

    // exec: in the container's namespaces, with its exit code.
    ok(
        &root,
        &["exec", "life", "sh", "-c", "echo data > /state.txt"],
    );
    assert_eq!(ok(&root, &["exec", "life", "cat", "/state.txt"]), "data\n");
    expect_code(&root, &["exec", "life", "sh", "-c", "exit 5"], 5);
    expect_code(&root, &["exec", "life", "no-such-command"], 127);
    let host = ok(&root, &["exec", "life", "hostname"]);
    assert_eq!(host.trim(), &id[..12]);
    let procs = ok(&root, &["exec", "life", "ps", "-o", "pid,args"]);
    assert!(
        procs.contains("sleep") || procs.contains("sh -c"),
        "{procs}"
    );
    assert!(
        procs.lines().count() < 8,
        "only the container's processes: {procs}"
    );
    let exec_cgroup = ok(&root, &["exec", "life", "cat", "/proc/self/cgroup"]);
    let init_cgroup = fs::read_to_string(format!(
        "/proc/{}/cgroup",
        inspect_field(&root, "life", "{{.State.Pid}}")
    ))
    .expect("init cgroup");
    assert!(init_cgroup.contains(&id), "{init_cgroup}");
    assert!(
        exec_cgroup.lines().any(|l| l.ends_with(":/")),
        "joined the cgroup namespace: {exec_cgroup}"
    );

    // pause / unpause: the freezer.
    ok(&root, &["pause", "life"]);
    let e = ps_entry(&root, "life");
    assert_eq!(e["State"], "paused");
    assert!(
        e["Status"].as_str().expect("status").ends_with("(Paused)"),
        "{e}"
    );
    // docker exec: the daemon's refusal is status 1 (125-127 are for the command).
    let (_, err) = expect_code(&root, &["exec", "life", "true"], 1);
    assert!(err.contains("paused"), "{err}");
    expect_code(&root, &["pause", "life"], 1);
    ok(&root, &["unpause", "life"]);
    assert_eq!(ps_entry(&root, "life")["State"], "running");
    assert_eq!(ok(&root, &["exec", "life", "echo", "thawed"]), "thawed\n");

    // stats from the cgroup.
    let stats = ok(&root, &["stats", "--no-stream", "life"]);
    let row = stats.lines().nth(1).expect("a stats row");
    assert!(
        row.starts_with(&id[..12]) && row.contains("life"),
        "{stats}"
    );
    let pids: u64 = row
        .split_whitespace()
        .last()
        .and_then(|p| p.parse().ok())
        .expect("PIDS");
    assert!(pids >= 2, "{stats}");

    // stop: the stop signal (the trap answers), well before the timeout.
    let t = Instant::now();
    ok(&root, &["stop", "-t", "10", "life"]);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let e = ps_entry(&root, "life");
    assert_eq!(e["State"], "exited");
    assert!(
        e["Status"]
            .as_str()
            .expect("status")
            .starts_with("Exited (143)"),
        "{e}"
    );
    assert!(ok(&root, &["ps", "-q"]).trim().is_empty());
    let (_, err) = expect_code(&root, &["exec", "life", "true"], 1);
    assert!(err.contains("not running"), "{err}");

    // start keeps the container's files.
    ok(&root, &["start", "life"]);
    assert_eq!(ps_entry(&root, "life")["State"], "running");
    assert_eq!(ok(&root, &["exec", "life", "cat", "/state.txt"]), "data\n");

    // restart: a new run, counted.
    let pid_before = inspect_field(&root, "life", "{{.State.Pid}}");
    ok(&root, &["restart", "-t", "1", "life"]);
    assert_eq!(ps_entry(&root, "life")["State"], "running");
    assert_ne!(inspect_field(&root, "life", "{{.State.Pid}}"), pid_before);
    assert_eq!(inspect_field(&root, "life", "{{.RestartCount}}"), "2");

    // kill: SIGKILL by default, 137.
    ok(&root, &["kill", "life"]);
    let e = ps_entry(&root, "life");
    assert!(
        e["Status"]
            .as_str()
            .expect("status")
            .starts_with("Exited (137)"),
        "{e}"
    );
    expect_code(&root, &["kill", "life"], 1);

    // logs: every run's output, with timestamps on request, the tail.
    let logs = ok(&root, &["logs", "life"]);
    assert_eq!(logs.matches("started").count(), 3, "{logs}");
    assert!(logs.contains("got-term"), "{logs}");
    let stamped = ok(&root, &["logs", "-t", "--tail", "1", "life"]);
    assert_eq!(stamped.lines().count(), 1, "{stamped}");
    assert!(
        stamped.starts_with("20") && stamped.contains('T'),
        "{stamped}"
    );

    // rm: refused while running, then gone.
    ok(&root, &["start", "life"]);
    let r = run(&root, &["rm", "life"]);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("Stop the container"), "{}", r.stderr);
    ok(&root, &["rm", "-f", "life"]);
    assert!(ps_json(&root).is_empty());
    assert!(cgroup_dirs(&id).is_empty(), "{:?}", cgroup_dirs(&id));
    expect_code(&root, &["logs", "life"], 1);
}

#[test]
fn logs_follow_until_the_container_exits() {
    let (_tmp, root) = store_with_busybox("run-logs");
    ok(
        &root,
        &[
            "run",
            "-d",
            "--name",
            "talker",
            "busybox",
            "sh",
            "-c",
            "for i in 1 2 3; do echo line-$i; sleep 0.3; done; echo err-line >&2",
        ],
    );
    let t = Instant::now();
    let r = run(&root, &["logs", "-f", "talker"]);
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(r.stdout, "line-1\nline-2\nline-3\n");
    assert_eq!(r.stderr, "err-line\n");
    assert!(
        t.elapsed() > Duration::from_millis(500),
        "followed: {:?}",
        t.elapsed()
    );
    let e = ps_entry(&root, "talker");
    assert!(
        e["Status"]
            .as_str()
            .expect("status")
            .starts_with("Exited (0)"),
        "{e}"
    );
    ok(&root, &["container", "prune", "-f"]);
    assert!(ps_json(&root).is_empty());
}

#[test]
fn killed_monitor_shows_the_container_exited() {
    let (_tmp, root) = store_with_busybox("run-monitor");
    ok(
        &root,
        &["run", "-d", "--name", "orphan", "busybox", "sleep", "1000"],
    );
    let id = container_id(&root, "orphan");
    let state: serde_json::Value = serde_json::from_slice(
        &fs::read(root.join("containers").join(&id).join("state.json")).expect("state"),
    )
    .expect("json");
    let monitor = state["Monitor"]["pid"].as_i64().expect("monitor pid") as i32;
    let init = state["Pid"]["pid"].as_i64().expect("init pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor),
        nix::sys::signal::SIGKILL,
    )
    .expect("kill the monitor");
    // The sandbox dies with its monitor (the lifeline); ps says so without hanging.
    wait_until(5, "the container to die", || {
        !std::path::Path::new(&format!("/proc/{init}")).exists()
    });
    let t = Instant::now();
    let e = ps_entry(&root, "orphan");
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(e["State"], "exited");
    assert!(
        e["Status"]
            .as_str()
            .expect("status")
            .starts_with("Exited (137)"),
        "{e}"
    );
    assert!(inspect_field(&root, "orphan", "{{.State.Error}}").contains("monitor"));
    assert!(
        cgroup_dirs(&id).is_empty(),
        "stale cgroups removed: {:?}",
        cgroup_dirs(&id)
    );
    // And it can start again.
    ok(&root, &["start", "orphan"]);
    assert_eq!(ps_entry(&root, "orphan")["State"], "running");
    ok(&root, &["rm", "-f", "orphan"]);
}

#[test]
fn commit_turns_changes_into_an_image() {
    let (_tmp, root) = store_with_busybox("run-commit");
    ok(
        &root,
        &[
            "run",
            "--name",
            "changed",
            "busybox",
            "sh",
            "-c",
            "echo committed > /c.txt && rm /bin/yes",
        ],
    );
    let image = ok(&root, &["commit", "changed", "snap:1"]);
    assert!(image.trim().starts_with("sha256:"), "{image}");
    assert_eq!(
        ok(&root, &["run", "--rm", "snap:1", "cat", "/c.txt"]),
        "committed\n"
    );
    expect_code(&root, &["run", "--rm", "snap:1", "ls", "/bin/yes"], 1);
    let layers = inspect_field(&root, "snap:1", "{{json .RootFS.Layers}}");
    let base = inspect_field(&root, "busybox", "{{json .RootFS.Layers}}");
    assert_eq!(
        serde_json::from_str::<Vec<String>>(&layers)
            .expect("layers")
            .len(),
        serde_json::from_str::<Vec<String>>(&base)
            .expect("layers")
            .len()
            + 1
    );
    ok(&root, &["rm", "changed"]);
}

/// `ps --format` templates, `--filter`, `-l`, and docker's COMMAND text.
#[test]
fn ps_templates_and_filters() {
    let (_tmp, root) = store_with_busybox("run-ps-filters");
    ok(
        &root,
        &[
            "run",
            "-d",
            "--name",
            "webby",
            "--label",
            "tier=front",
            "busybox",
            "sleep",
            "300",
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    expect_code(
        &root,
        &["run", "--name", "gone", "busybox", "sh", "-c", "exit 3"],
        3,
    );
    let lines =
        |args: &[&str]| -> Vec<String> { ok(&root, args).lines().map(str::to_owned).collect() };
    assert_eq!(lines(&["ps", "--format", "{{.Names}}"]), ["webby"]);
    assert_eq!(
        lines(&["ps", "-a", "--format", "{{.Names}} {{.State}}"]),
        ["gone exited", "webby running"],
        "newest first"
    );
    assert_eq!(
        lines(&["ps", "-f", "status=exited", "--format", "{{.Names}}"]),
        ["gone"],
        "a status filter looks at every container"
    );
    let gone = container_id(&root, "gone");
    assert_eq!(
        lines(&["ps", "-a", "-q", "-f", "exited=3"]),
        [gone[..12].to_string()]
    );
    assert!(lines(&["ps", "-a", "-q", "-f", "exited=4"]).is_empty());
    assert_eq!(
        lines(&[
            "ps",
            "-a",
            "-f",
            "label=tier=front",
            "--format",
            "{{.Names}}"
        ]),
        ["webby"]
    );
    assert_eq!(
        lines(&[
            "ps",
            "-a",
            "-f",
            "name=ebb",
            "-f",
            "name=gon",
            "--format",
            "{{.Names}}"
        ]),
        ["gone", "webby"],
        "values of one key are alternatives"
    );
    assert_eq!(lines(&["ps", "-l", "--format", "{{.Names}}"]), ["gone"]);
    assert_eq!(
        lines(&["ps", "-a", "-f", "name=gone", "--format", "{{.Command}}"]),
        ["\"sh -c 'exit 3'\""]
    );
    let table = lines(&["ps", "-a", "--format", "table {{.Names}}\\t{{.Status}}"]);
    assert_eq!(table[0], "NAMES     STATUS");
    assert!(table[1].starts_with("gone      Exited (3) "), "{table:?}");
    ok(&root, &["rm", "-f", "webby", "gone"]);
}

/// `system df` as docker's: images a container uses are active and not reclaimable,
/// running containers are active, stopped ones' writes reclaimable, volumes a container
/// mounts active, the others reclaimable.
#[test]
fn system_df_counts_containers_volumes_and_their_images() {
    let (_tmp, root) = store_with_busybox("run-df");
    let row = |df: &str, kind: &str| -> Vec<String> {
        let line = df
            .lines()
            .find(|l| l.starts_with(kind))
            .unwrap_or_else(|| panic!("no {kind} row:\n{df}"));
        line[kind.len()..]
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let df = ok(&root, &["system", "df"]);
    assert_eq!(row(&df, "Containers"), ["0", "0", "0B", "0B"], "{df}");
    assert_eq!(row(&df, "Images")[..2], ["1", "0"], "{df}");
    ok(&root, &["volume", "create", "unused"]);
    ok(
        &root,
        &[
            "run",
            "-d",
            "--name",
            "up",
            "-v",
            "data:/data",
            "busybox",
            "sh",
            "-c",
            "head -c 300000 /dev/zero > /data/f; sleep 100",
        ],
    );
    ok(
        &root,
        &[
            "run",
            "--name",
            "done",
            "busybox",
            "sh",
            "-c",
            "head -c 200000 /dev/zero > /f",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let df = loop {
        let df = ok(&root, &["system", "df"]);
        if row(&df, "Local Volumes")[2] != "0B" || Instant::now() > deadline {
            break df;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // The image is in use: active, nothing of it reclaimable.
    let images = row(&df, "Images");
    assert_eq!(images[..2], ["1", "1"], "{df}");
    assert_eq!(images[3], "0B (0%)", "{df}");
    // Two containers, one running; the stopped one's 200 kB file is reclaimable.
    let containers = row(&df, "Containers");
    assert_eq!(containers[..2], ["2", "1"], "{df}");
    assert_eq!(containers[2..], ["200kB", "200kB (100%)"], "{df}");
    // Two volumes, one mounted; the unused one is empty.
    let volumes = row(&df, "Local Volumes");
    assert_eq!(volumes[..2], ["2", "1"], "{df}");
    assert_eq!(volumes[2], "300kB", "{df}");
    assert_eq!(volumes[3], "0B (0%)", "{df}");
    ok(&root, &["rm", "-f", "up", "done"]);
    let df = ok(&root, &["system", "df"]);
    assert_eq!(row(&df, "Containers"), ["0", "0", "0B", "0B"], "{df}");
    assert_eq!(row(&df, "Images")[..2], ["1", "0"], "{df}");
}

#[test]
fn wait_port_rename_and_diff_behave_as_docker() {
    let (tmp, root) = store_with_busybox("run-wait");
    // wait: blocks until the end, prints each status; 1 for a missing one.
    ok(
        &root,
        &[
            "run",
            "-d",
            "--name",
            "w",
            "busybox",
            "sh",
            "-c",
            "sleep 1; exit 7",
        ],
    );
    let t = Instant::now();
    let r = run(&root, &["wait", "w", "no-such"]);
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(r.stdout, "7\n");
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr.contains("No such container: no-such"),
        "{}",
        r.stderr
    );
    assert_eq!(
        ok(&root, &["wait", "w"]),
        "7\n",
        "an exited one answers at once"
    );
    ok(&root, &["create", "--name", "fresh", "busybox", "true"]);
    assert_eq!(ok(&root, &["wait", "fresh"]), "0\n");
    // A --rm container is gone when it ends; its waiter still gets the status.
    ok(
        &root,
        &[
            "run",
            "-d",
            "--rm",
            "--name",
            "gone",
            "busybox",
            "sh",
            "-c",
            "sleep 1; exit 5",
        ],
    );
    assert_eq!(ok(&root, &["wait", "gone"]), "5\n");
    expect_code(&root, &["inspect", "gone"], 1);
    let waiters = root.join("containers/.waiters");
    assert!(
        fs::read_dir(&waiters).map_or(true, |d| d.count() == 0),
        "waiters leave nothing behind"
    );

    // port: the published ports of a running container.
    let (p1, p2) = (free_port(), free_port());
    let spec1 = format!("{p1}:80");
    let spec2 = format!("127.0.0.1:{p2}:81");
    ok(
        &root,
        &[
            "run", "-d", "--name", "pub", "-p", &spec1, "-p", &spec2, "busybox", "sleep", "60",
        ],
    );
    assert_eq!(
        ok(&root, &["port", "pub"]),
        format!("80/tcp -> 0.0.0.0:{p1}\n81/tcp -> 127.0.0.1:{p2}\n")
    );
    assert_eq!(
        ok(&root, &["port", "pub", "81/tcp"]),
        format!("127.0.0.1:{p2}\n")
    );
    let (_, err) = expect_code(&root, &["port", "pub", "82"], 1);
    assert!(
        err.contains("No public port '82/tcp' published for pub"),
        "{err}"
    );

    // rename: the new name works, the old one is free, a taken one is refused.
    let id = container_id(&root, "pub");
    let (_, err) = expect_code(&root, &["rename", "pub", "w"], 1);
    assert!(err.contains("already in use"), "{err}");
    ok(&root, &["rename", "pub", "published"]);
    assert_eq!(container_id(&root, "published"), id);
    expect_code(&root, &["port", "pub"], 1);
    assert_eq!(ps_entry(&root, "published")["Names"], "published");
    ok(&root, &["run", "-d", "--name", "pub", "busybox", "true"]);
    ok(&root, &["rm", "-f", "published", "pub", "w", "fresh"]);

    // diff: the container's changes against its image, as docker lists them.
    let ctx = tmp.path().join("nested");
    fs::create_dir_all(&ctx).expect("ctx");
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN mkdir -p /a/b/c && echo x > /a/b/c/old\n",
    )
    .expect("Dockerfile");
    ok(
        &root,
        &["build", "-q", "-t", "nested", ctx.to_str().expect("utf-8")],
    );
    let script = "touch /a/b/c/f; chmod 700 /a/b/c/old; echo hi >> /etc/passwd; \
                  rm /bin/ls; mkdir -p /new/d; rm -rf /tmp; mkdir /tmp; touch /tmp/z";
    ok(
        &root,
        &["run", "--name", "changed", "nested", "sh", "-c", script],
    );
    let diff = ok(&root, &["diff", "changed"]);
    let expected = [
        "C /a",
        "C /a/b",
        "C /a/b/c",
        "A /a/b/c/f",
        "C /a/b/c/old",
        "C /bin",
        "D /bin/ls",
        "C /etc",
        "C /etc/passwd",
        "A /new",
        "A /new/d",
        "C /tmp",
        "A /tmp/z",
    ];
    assert_eq!(diff.lines().collect::<Vec<_>>(), expected, "{diff}");
    ok(
        &root,
        &["run", "--name", "removed", "nested", "rm", "-rf", "/a/b"],
    );
    assert_eq!(ok(&root, &["diff", "removed"]), "C /a\nD /a/b\n");
    ok(&root, &["run", "--name", "untouched", "nested", "true"]);
    assert_eq!(ok(&root, &["diff", "untouched"]), "");
    // Missing mount targets are made in the container's own layer, as
    // docker's: diff lists them and commit keeps them.
    ok(
        &root,
        &[
            "run",
            "--name",
            "mounts",
            "-v",
            "mvol:/data/v",
            "--tmpfs",
            "/scratch",
            "nested",
            "true",
        ],
    );
    assert_eq!(
        ok(&root, &["diff", "mounts"]),
        "A /data\nA /data/v\nA /scratch\n"
    );
    ok(&root, &["commit", "mounts", "with-mountpoints:1"]);
    ok(
        &root,
        &["run", "--rm", "with-mountpoints:1", "test", "-d", "/data/v"],
    );
}

#[test]
fn export_writes_the_container_filesystem() {
    let (tmp, root) = store_with_busybox("run-export");
    let script = "mkdir -p /data/sub && echo kept > /data/sub/f && rm /bin/ls && rm -rf /tmp";
    ok(
        &root,
        &["run", "--name", "ex", "busybox", "sh", "-c", script],
    );
    let out = tmp.path().join("ex.tar");
    ok(&root, &["export", "-o", out.to_str().expect("utf-8"), "ex"]);
    let listing = support::sh(std::process::Command::new("tar").arg("-tvf").arg(&out));
    let names: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    for present in ["bin/busybox", "etc/passwd", "data/sub/", "data/sub/f"] {
        assert!(names.contains(&present), "{present} in {names:?}");
    }
    for gone in ["bin/ls", "tmp/"] {
        assert!(!names.contains(&gone), "{gone} deleted: {names:?}");
    }
    assert!(
        !names.iter().any(|n| n.contains(".wh.")),
        "a flat tree has no whiteouts: {names:?}"
    );
    let unpacked = tmp.path().join("unpacked");
    fs::create_dir_all(&unpacked).expect("dir");
    support::sh(
        std::process::Command::new("tar")
            .arg("-xf")
            .arg(&out)
            .arg("-C")
            .arg(&unpacked),
    );
    assert_eq!(
        fs::read_to_string(unpacked.join("data/sub/f")).expect("f"),
        "kept\n"
    );
    // The archive is an importable rootfs: docker's export | import round trip.
    ok(
        &root,
        &["import", out.to_str().expect("utf-8"), "exported:1"],
    );
    assert_eq!(
        ok(&root, &["run", "--rm", "exported:1", "cat", "/data/sub/f"]),
        "kept\n"
    );

    // A running container is exported as it is and keeps running.
    ok(
        &root,
        &[
            "run",
            "-d",
            "--name",
            "live",
            "busybox",
            "sh",
            "-c",
            "echo x > /mark; sleep 60",
        ],
    );
    wait_until(10, "the mark", || {
        run(&root, &["exec", "live", "cat", "/mark"]).stdout == "x\n"
    });
    let live = tmp.path().join("live.tar");
    ok(
        &root,
        &["export", "-o", live.to_str().expect("utf-8"), "live"],
    );
    let listing = support::sh(std::process::Command::new("tar").arg("-tf").arg(&live));
    assert!(listing.lines().any(|l| l == "mark"), "{listing}");
    assert_eq!(ps_entry(&root, "live")["State"], "running");
    // No half archive under the name asked for when it cannot be written.
    let (_, err) = expect_code(&root, &["export", "-o", "/nonexistent/x.tar", "live"], 1);
    assert!(err.contains("exporting to /nonexistent/x.tar"), "{err}");
    expect_code(
        &root,
        &["export", "-o", live.to_str().expect("utf-8"), "no-such"],
        1,
    );
    ok(&root, &["rm", "-f", "live", "ex"]);
}

#[test]
fn top_lists_the_containers_processes() {
    let (_tmp, root) = store_with_busybox("run-top");
    ok(
        &root,
        &[
            "run",
            "-d",
            "--name",
            "busy",
            "busybox",
            "sh",
            "-c",
            "sleep 300 & exec sleep 301",
        ],
    );
    wait_until(10, "both sleepers", || {
        ok(&root, &["top", "busy"]).matches("sleep 30").count() == 2
    });
    let table = ok(&root, &["top", "busy"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2, "only the container's processes: {table}");
    assert!(rows.iter().any(|r| r.ends_with("sleep 300")), "{table}");
    assert!(rows.iter().any(|r| r.ends_with("sleep 301")), "{table}");
    // ps options pass through; the PID column finds the rows.
    let custom = ok(&root, &["top", "busy", "-o", "pid,comm"]);
    assert_eq!(custom.lines().count(), 3, "{custom}");
    assert!(custom.starts_with("PID "), "{custom}");
    ok(&root, &["stop", "-t", "0", "busy"]);
    let (_, err) = expect_code(&root, &["top", "busy"], 1);
    assert!(err.contains("not running"), "{err}");
    ok(&root, &["rm", "busy"]);
}
