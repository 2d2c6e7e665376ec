//! `forge build`'s cache as a developer's edit-build loop meets it, read from the plain
//! progress (`#N CACHED` for a hit, `#N DONE` for a step that ran): a second build is all
//! cached; a changed context file re-runs from the first COPY that selects it; an edited
//! line re-runs from that line; a changed build arg re-runs only the steps that see it;
//! files no COPY selects (or `.dockerignore` excludes) change nothing; `--no-cache` runs
//! everything; a cache mount persists across builds. Also: two cold builds in separate
//! stores with `SOURCE_DATE_EPOCH` give the same image, and independent stages run in
//! parallel.

#[path = "support/build.rs"]
mod build_support;
mod support;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use build_support::*;
use support::*;

const DOCKERFILE: &str = "FROM busybox
COPY a.txt /a.txt
RUN cat /a.txt > /a2
COPY b.txt /b.txt
ARG V=1
RUN echo $V > /v
RUN echo last > /last
";

fn context(dir: &Path) {
    fs::create_dir_all(dir).expect("mkdir");
    fs::write(dir.join("Dockerfile"), DOCKERFILE).expect("write");
    fs::write(dir.join("a.txt"), "a\n").expect("write");
    fs::write(dir.join("b.txt"), "b\n").expect("write");
    fs::write(dir.join("ignored.txt"), "i\n").expect("write");
    fs::write(dir.join("unused.txt"), "u\n").expect("write");
    fs::write(dir.join(".dockerignore"), "ignored.txt\n").expect("write");
}

/// The steps of a build's plain progress, each as the instruction's text (the part after
/// `[stage n/m] `).
fn short(names: Vec<String>) -> Vec<String> {
    names
        .into_iter()
        .map(|n| match n.split_once("] ") {
            Some((_, rest)) => rest.to_string(),
            None => n,
        })
        .collect()
}

fn assert_all_cached(r: &Run, what: &str) {
    let s = steps(&r.stderr);
    assert!(!s.is_empty(), "{what}: no steps in\n{}", r.stderr);
    assert!(
        s.iter().all(|s| s.cached && !s.done),
        "{what}: every step CACHED, none DONE:\n{}",
        r.stderr
    );
    assert!(
        !r.stderr.lines().any(|l| l.contains(" DONE ")),
        "{what}: nothing ran:\n{}",
        r.stderr
    );
}

#[test]
fn rebuilds_rerun_exactly_what_changed() {
    let tmp = scratch("build-cache");
    let root = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    import_busybox_image(&root);
    context(&ctx);
    let c = ctx.to_str().expect("utf-8");

    let first = build_ok(&root, &["-t", "app:1", c]);
    assert_eq!(
        short(ran(&first.stderr)),
        [
            "COPY a.txt /a.txt",
            "RUN cat /a.txt > /a2",
            "COPY b.txt /b.txt",
            "RUN echo $V > /v",
            "RUN echo last > /last"
        ],
        "a cold build runs every step:\n{}",
        first.stderr
    );
    assert!(cached(&first.stderr).is_empty(), "{}", first.stderr);

    // Nothing changed: every step from the cache.
    let second = build_ok(&root, &["-t", "app:1", c]);
    assert_all_cached(&second, "second build");
    assert_eq!(steps(&second.stderr).len(), 5, "{}", second.stderr);

    // One context file: from the first COPY that selects it.
    fs::write(ctx.join("b.txt"), "b changed\n").expect("write");
    let r = build_ok(&root, &["-t", "app:1", c]);
    assert_eq!(
        short(ran(&r.stderr)),
        [
            "COPY b.txt /b.txt",
            "RUN echo $V > /v",
            "RUN echo last > /last"
        ],
        "{}",
        r.stderr
    );
    assert_eq!(
        short(cached(&r.stderr)),
        ["COPY a.txt /a.txt", "RUN cat /a.txt > /a2"],
        "{}",
        r.stderr
    );

    // Files that .dockerignore excludes or no COPY selects: nothing re-runs.
    fs::write(ctx.join("ignored.txt"), "i changed\n").expect("write");
    fs::write(ctx.join("unused.txt"), "u changed\n").expect("write");
    fs::write(ctx.join("new-unused.txt"), "new\n").expect("write");
    let r = build_ok(&root, &["-t", "app:1", c]);
    assert_all_cached(&r, "after changing unselected files");

    // A file's mtime alone changes nothing (content digests, not mtimes).
    sh(std::process::Command::new("touch")
        .arg("-d")
        .arg("2001-01-01")
        .arg(ctx.join("a.txt")));
    let r = build_ok(&root, &["-t", "app:1", c]);
    assert_all_cached(&r, "after touching a.txt");

    // An edited line: from that line on.
    fs::write(
        ctx.join("Dockerfile"),
        DOCKERFILE.replace("echo last", "echo final"),
    )
    .expect("write");
    let r = build_ok(&root, &["-t", "app:1", c]);
    assert_eq!(
        short(ran(&r.stderr)),
        ["RUN echo final > /last"],
        "{}",
        r.stderr
    );
    assert_eq!(cached(&r.stderr).len(), 4, "{}", r.stderr);

    // A build arg: only the steps that see it (those after its ARG).
    let r = build_ok(&root, &["-t", "app:1", "--build-arg", "V=2", c]);
    assert_eq!(
        short(ran(&r.stderr)),
        ["RUN echo $V > /v", "RUN echo final > /last"],
        "{}",
        r.stderr
    );
    assert_eq!(
        short(cached(&r.stderr)),
        [
            "COPY a.txt /a.txt",
            "RUN cat /a.txt > /a2",
            "COPY b.txt /b.txt"
        ],
        "{}",
        r.stderr
    );
    // The same value again: cached; a build arg no ARG declares changes nothing.
    let r = build_ok(
        &root,
        &[
            "-t",
            "app:1",
            "--build-arg",
            "V=2",
            "--build-arg",
            "UNDECLARED=x",
            c,
        ],
    );
    assert_all_cached(&r, "same build arg again");

    // --no-cache: everything runs.
    let r = build_ok(&root, &["-t", "app:1", "--no-cache", c]);
    assert_eq!(ran(&r.stderr).len(), 5, "{}", r.stderr);
    assert!(cached(&r.stderr).is_empty(), "{}", r.stderr);
    let rootfs = unpack(&root, "app:1", &tmp.path().join("unpacked")).expect("unpack");
    assert_eq!(
        fs::read_to_string(rootfs.join("b.txt")).expect("b.txt"),
        "b changed\n"
    );
    assert_eq!(fs::read_to_string(rootfs.join("v")).expect("v"), "1\n");
    assert_blobs_intact(&root);
}

#[test]
fn a_cache_mount_persists_across_builds() {
    let tmp = scratch("build-cache-mount");
    let root = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    import_busybox_image(&root);
    fs::create_dir_all(&ctx).expect("mkdir");
    fs::write(
        ctx.join("Dockerfile"),
        "# syntax=docker/dockerfile:1\nFROM busybox\nARG RUN_NO\nRUN --mount=type=cache,target=/var/cache/app echo \"$RUN_NO\" >> /var/cache/app/runs && cat /var/cache/app/runs > /seen\n",
    )
    .expect("write");
    let c = ctx.to_str().expect("utf-8");
    build_ok(&root, &["-t", "m:1", "--build-arg", "RUN_NO=1", c]);
    build_ok(&root, &["-t", "m:2", "--build-arg", "RUN_NO=2", c]);
    let rootfs = unpack(&root, "m:2", &tmp.path().join("u2")).expect("unpack");
    assert_eq!(
        fs::read_to_string(rootfs.join("seen")).expect("seen"),
        "1\n2\n",
        "the second build saw what the first left in the cache mount"
    );
    assert!(
        !rootfs.join("var/cache/app/runs").exists(),
        "a cache mount is never in a layer"
    );
}

/// A context whose RUN makes files at build time (fresh mtimes, a whiteout) and whose
/// COPY reads files with the given mtime (later than SOURCE_DATE_EPOCH).
fn repro_context(dir: &Path, mtime: &str) {
    fs::create_dir_all(dir.join("src")).expect("mkdir");
    fs::write(
        dir.join("Dockerfile"),
        "FROM busybox\nENV APP=1\nCOPY src /app/\nRUN mkdir /made && echo fixed > /made/f && rm /etc/group\nWORKDIR /app\nCMD [\"cat\", \"/app/x\"]\n",
    )
    .expect("write");
    fs::write(dir.join("src/x"), "x\n").expect("write");
    fs::write(dir.join("src/y"), "y\n").expect("write");
    sh(std::process::Command::new("touch")
        .arg("-d")
        .arg(mtime)
        .arg(dir.join("src/x"))
        .arg(dir.join("src")));
}

#[test]
fn source_date_epoch_builds_are_reproducible() {
    let tmp = scratch("build-repro");
    let mut results = Vec::new();
    for (i, mtime) in ["2025-01-01", "2025-06-01"].iter().enumerate() {
        let root = tmp.path().join(format!("store{i}"));
        let ctx = tmp.path().join(format!("ctx{i}"));
        // The base image too is made with SOURCE_DATE_EPOCH, so that its history matches.
        let tar = busybox_tar();
        sh(forge(&root)
            .env("SOURCE_DATE_EPOCH", "1600000000")
            .args(["import", "-c", "CMD [\"/bin/sh\"]", "-c", "ENV PATH=/bin"])
            .arg(tar)
            .arg("busybox:latest"));
        // Different mtimes after SOURCE_DATE_EPOCH: clamped to it in the layers.
        repro_context(&ctx, mtime);
        let iid = tmp.path().join(format!("iid{i}"));
        let r = build(
            &root,
            &[
                "-t",
                "repro:1",
                "--iidfile",
                iid.to_str().expect("utf-8"),
                ctx.to_str().expect("utf-8"),
            ],
            &[("SOURCE_DATE_EPOCH", "1700000000")],
        );
        assert!(r.ok, "build {i}: {}", r.stderr);
        let config = image_config(&root, "repro:1");
        assert_eq!(config["created"], "2023-11-14T22:13:20Z", "{config}");
        for h in config["history"]
            .as_array()
            .expect("history")
            .iter()
            .skip(1)
        {
            assert_eq!(h["created"], "2023-11-14T22:13:20Z", "{h}");
        }
        results.push((
            fs::read_to_string(&iid).expect("iidfile"),
            manifest_of(&root, "repro:1"),
        ));
        // Let the clock move on so that unclamped times would differ.
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    assert_eq!(
        results[0], results[1],
        "same image id and manifest digest from two cold builds"
    );
}

#[test]
fn independent_stages_run_in_parallel() {
    let tmp = scratch("build-parallel");
    let root = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    import_busybox_image(&root);
    fs::create_dir_all(&ctx).expect("mkdir");
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox AS a\nRUN sleep 2 && echo a > /a\nFROM busybox AS b\nRUN sleep 2 && echo b > /b\nFROM busybox\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n",
    )
    .expect("write");
    let start = Instant::now();
    let r = build_ok(
        &root,
        &["-t", "par:1", "--jobs", "2", ctx.to_str().expect("utf-8")],
    );
    let took = start.elapsed();
    assert!(
        took.as_secs_f64() < 3.5,
        "two 2 s stages took {took:?}, not run in parallel:\n{}",
        r.stderr
    );
    let rootfs = unpack(&root, "par:1", &tmp.path().join("u")).expect("unpack");
    assert_eq!(fs::read_to_string(rootfs.join("a")).expect("a"), "a\n");
    assert_eq!(fs::read_to_string(rootfs.join("b")).expect("b"), "b\n");
}

/// A server on 127.0.0.1 that answers every GET with the current `body`, counting them.
fn serve(
    body: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    gets: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            loop {
                let mut h = String::new();
                match reader.read_line(&mut h) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if h == "\r\n" || h == "\n" => break,
                    Ok(_) => {}
                }
            }
            gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let b = body.lock().expect("body lock").clone();
            let _ = conn
                .write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        b.len()
                    )
                    .as_bytes(),
                )
                .and_then(|_| conn.write_all(&b));
        }
    });
    port
}

#[test]
fn add_of_a_url_reruns_when_the_download_changes() {
    let tmp = scratch("build-cache-url");
    let root = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    import_busybox_image(&root);
    let body = std::sync::Arc::new(std::sync::Mutex::new(b"v1\n".to_vec()));
    let gets = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let port = serve(body.clone(), gets.clone());
    let fetched = || gets.load(std::sync::atomic::Ordering::SeqCst);
    fs::create_dir_all(&ctx).expect("mkdir");
    fs::write(
        ctx.join("Dockerfile"),
        format!("FROM busybox\nADD http://127.0.0.1:{port}/f.txt /f.txt\nRUN cp /f.txt /g.txt\n"),
    )
    .expect("write");
    let c = ctx.to_str().expect("utf-8");
    build_ok(&root, &["-t", "url:1", c]);
    assert_eq!(
        fetched(),
        1,
        "the cache key and the copy share one download"
    );
    let r = build_ok(&root, &["-t", "url:1", c]);
    assert_all_cached(&r, "same download");
    assert_eq!(fetched(), 2, "a rebuild checks the content once");
    *body.lock().expect("body lock") = b"v2 changed\n".to_vec();
    let r = build_ok(&root, &["-t", "url:1", c]);
    assert_eq!(
        ran(&r.stderr).len(),
        2,
        "a changed download re-runs:\n{}",
        r.stderr
    );
    let rootfs = unpack(&root, "url:1", &tmp.path().join("u")).expect("unpack");
    assert_eq!(
        fs::read_to_string(rootfs.join("g.txt")).expect("g.txt"),
        "v2 changed\n"
    );
}

/// An unchanged rebuild gives back the same image (same id), as BuildKit
/// does; a changed input gives a new one.
#[test]
fn an_unchanged_rebuild_is_the_same_image() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("store");
    import_busybox_image(&root);
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).expect("mkdir");
    std::fs::write(ctx.join("a.txt"), "a\n").expect("write");
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nCOPY a.txt /\nRUN cat /a.txt > /b.txt\n",
    )
    .expect("write");
    let ctx_arg = ctx.to_str().expect("utf-8");
    let id = |root: &std::path::Path| {
        build_ok(root, &["-q", "-t", "same:1", ctx_arg])
            .stdout
            .trim()
            .to_string()
    };
    let first = id(&root);
    assert!(first.starts_with("sha256:"), "{first}");
    assert_eq!(id(&root), first);
    std::fs::write(ctx.join("a.txt"), "changed\n").expect("write");
    assert_ne!(id(&root), first);
}

#[test]
fn no_cache_filter_reruns_the_named_stage_and_what_depends_on_it() {
    let tmp = scratch("build-no-cache-filter");
    let root = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    import_busybox_image(&root);
    fs::create_dir_all(&ctx).expect("mkdir");
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox AS base\nRUN echo base > /base\n\
         FROM busybox AS Tools\nRUN echo tools > /tools\n\
         FROM base AS final\nCOPY --from=tools /tools /tools\nRUN echo final > /final\n",
    )
    .expect("write");
    let c = ctx.to_str().expect("utf-8");
    build_ok(&root, &["-t", "app:1", c]);

    // Stage names match case-insensitively and comma lists work, as in buildx; a name
    // no stage has is ignored.
    let r = build_ok(
        &root,
        &["--no-cache-filter", "TOOLS,nosuch", "-t", "app:1", c],
    );
    assert_eq!(
        short(ran(&r.stderr)),
        [
            "RUN echo tools > /tools",
            "COPY --from=tools /tools /tools",
            "RUN echo final > /final"
        ],
        "the filtered stage and the steps that use its result run:\n{}",
        r.stderr
    );
    assert_eq!(
        short(cached(&r.stderr)),
        ["RUN echo base > /base"],
        "{}",
        r.stderr
    );
    // A later plain build takes the fresh results from the cache.
    let again = build_ok(&root, &["-t", "app:1", c]);
    assert_all_cached(&again, "build after --no-cache-filter");
}

/// `forge build [-f PATH] - < INPUT`.
fn build_from_stdin(root: &Path, args: &[&str], input: &Path) -> Run {
    let mut c = forge(root);
    c.arg("build")
        .arg("--progress=plain")
        .args(args)
        .arg("-")
        .stdin(fs::File::open(input).expect("open stdin input"));
    output(&mut c)
}

#[test]
fn a_context_archive_or_a_dockerfile_on_stdin() {
    let tmp = scratch("build-stdin");
    let root = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    import_busybox_image(&root);
    fs::create_dir_all(ctx.join("sub")).expect("mkdir");
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nCOPY . /ctx/\nRUN cat /ctx/a.txt > /a2\n",
    )
    .expect("write");
    fs::write(
        ctx.join("sub/Other.dockerfile"),
        "FROM busybox\nCOPY sub/b.txt /b\n",
    )
    .expect("write");
    fs::write(ctx.join("a.txt"), "from the archive\n").expect("write");
    fs::write(ctx.join("sub/b.txt"), "b\n").expect("write");
    fs::write(ctx.join("ignored.txt"), "i\n").expect("write");
    fs::write(ctx.join(".dockerignore"), "ignored.txt\n").expect("write");

    // A gzip'd tar of the context, made by GNU tar.
    let archive = tmp.path().join("ctx.tar.gz");
    let r = output(
        Command::new("tar")
            .arg("-czf")
            .arg(&archive)
            .arg("-C")
            .arg(&ctx)
            .arg("."),
    );
    assert!(r.ok, "tar: {}", r.stderr);
    let r = build_from_stdin(&root, &["-t", "fromtar:1"], &archive);
    assert!(r.ok, "build - < ctx.tar.gz: {}", r.stderr);
    let work = tmp.path().join("unpack");
    let rootfs = unpack(&root, "fromtar:1", &work).expect("unpack");
    assert_eq!(
        fs::read_to_string(rootfs.join("a2")).expect("/a2"),
        "from the archive\n"
    );
    assert!(rootfs.join("ctx/sub/b.txt").is_file());
    assert!(
        !rootfs.join("ctx/ignored.txt").exists(),
        ".dockerignore inside the archive applies"
    );

    // -f names a Dockerfile inside the archive.
    let r = build_from_stdin(
        &root,
        &["-f", "sub/Other.dockerfile", "-t", "other:1"],
        &archive,
    );
    assert!(r.ok, "build -f sub/Other.dockerfile -: {}", r.stderr);
    let rootfs = unpack(&root, "other:1", &work).expect("unpack");
    assert_eq!(fs::read_to_string(rootfs.join("b")).expect("/b"), "b\n");
    let r = build_from_stdin(&root, &["-f", "missing/Dockerfile"], &archive);
    assert!(!r.ok);
    assert!(
        r.stderr.contains("no Dockerfile at missing/Dockerfile"),
        "{}",
        r.stderr
    );

    // Anything but an archive is a Dockerfile, with no context to copy from.
    let lone = tmp.path().join("Lone");
    fs::write(&lone, "FROM busybox\nRUN echo lone > /lone\n").expect("write");
    let r = build_from_stdin(&root, &["-t", "lone:1"], &lone);
    assert!(r.ok, "build - < Dockerfile: {}", r.stderr);
    let rootfs = unpack(&root, "lone:1", &work).expect("unpack");
    assert_eq!(
        fs::read_to_string(rootfs.join("lone")).expect("/lone"),
        "lone\n"
    );
    fs::write(&lone, "FROM busybox\nCOPY a.txt /\n").expect("write");
    let r = build_from_stdin(&root, &[], &lone);
    assert!(!r.ok, "COPY with no context fails:\n{}", r.stderr);

    // Both from standard input is docker's usage error.
    let r = build_from_stdin(&root, &["-f", "-"], &lone);
    assert!(!r.ok);
    assert!(
        r.stderr
            .contains("can't use stdin for both build context and dockerfile"),
        "{}",
        r.stderr
    );
}

/// Imports the busybox rootfs with a fixed SOURCE_DATE_EPOCH, so that separate stores
/// (separate machines) hold the very same base image, as after pulling it.
fn import_pinned_busybox(root: &Path) {
    let tar = busybox_tar();
    let r = output(
        forge(root)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["import", "-c", "CMD [\"/bin/sh\"]", "-c", "ENV PATH=/bin"])
            .arg(&tar)
            .arg("busybox:latest"),
    );
    assert!(r.ok, "import: {}", r.stderr);
}

/// A COPY layer of a few MiB (several gzip blocks): 48 files of pseudo-random base64.
fn big_context(dir: &Path) {
    fs::create_dir_all(dir.join("data")).expect("mkdir");
    fs::write(dir.join("Dockerfile"), "FROM busybox\nCOPY data /data/\n").expect("write");
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..48 {
        let body: Vec<u8> = (0..100_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                alphabet[(x >> 58) as usize]
            })
            .collect();
        fs::write(dir.join(format!("data/f{i:02}")), body).expect("write");
    }
}

fn memo_entries(root: &Path) -> usize {
    fs::read_dir(root.join("cache/gzip-blocks")).map_or(0, |d| d.count())
}

#[test]
fn a_rebuild_after_an_edit_recompresses_little_and_equals_a_cold_build() {
    let tmp = scratch("build-memo");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    import_pinned_busybox(&a);
    import_pinned_busybox(&b);
    let ctx = tmp.path().join("ctx");
    big_context(&ctx);
    let sde = [("SOURCE_DATE_EPOCH", "1700000000")];
    let args = ["-t", "memo:1", ctx.to_str().expect("utf-8")];
    let r = build(&a, &args, &sde);
    assert!(r.ok, "{}", r.stderr);
    let first = memo_entries(&a);
    assert!(
        first >= 3,
        "the COPY layer's blocks are remembered: {first}"
    );

    // Bytes inserted into one file in the middle: the rebuild compresses only the blocks
    // around it, and its image is the one a cold build of the edited context gives.
    let edited = ctx.join("data/f24");
    let mut body = fs::read(&edited).expect("read");
    body.splice(50_000..50_000, b"an edit in the middle\n".iter().copied());
    fs::write(&edited, body).expect("write");
    let r = build(&a, &args, &sde);
    assert!(r.ok, "{}", r.stderr);
    let new = memo_entries(&a) - first;
    assert!(new <= 2, "{new} blocks compressed again of {first}");
    let r = build(&b, &args, &sde);
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(manifest_of(&a, "memo:1"), manifest_of(&b, "memo:1"));

    // Pruning the images drops the memo entries of the layers that went with them.
    let r = output(forge(&a).args(["image", "prune", "-a", "-f"]));
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(memo_entries(&a), 0);
}

#[test]
fn a_cache_exported_to_a_directory_serves_a_fresh_store() {
    let tmp = scratch("build-shared-cache");
    let (a, b) = (tmp.path().join("machine-a"), tmp.path().join("machine-b"));
    let ctx = tmp.path().join("ctx");
    let cache_dir = tmp.path().join("cache");
    import_pinned_busybox(&a);
    import_pinned_busybox(&b);
    context(&ctx);
    let c = ctx.to_str().expect("utf-8");
    let to = format!("type=local,dest={},mode=max", cache_dir.display());
    let from = format!("type=local,src={}", cache_dir.display());

    let first = build_ok(&a, &["--cache-to", &to, "-t", "app:1", c]);
    assert_eq!(short(ran(&first.stderr)).len(), 5, "{}", first.stderr);
    let r = output(
        Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci:{}:latest", cache_dir.display())),
    );
    assert!(r.ok, "skopeo reads the cache directory: {}", r.stderr);
    assert!(
        r.stdout.contains("application/vnd.forge.buildcache.v1"),
        "{}",
        r.stdout
    );

    // Machine B starts empty (but for its base image): every step comes from the cache.
    let r = build_ok(&b, &["--cache-from", &from, "-t", "app:1", c]);
    assert_all_cached(&r, "fresh store with --cache-from");
    let rootfs = unpack(&b, "app:1", &tmp.path().join("unpack")).expect("unpack");
    assert_eq!(fs::read_to_string(rootfs.join("a2")).expect("/a2"), "a\n");
    assert_eq!(
        fs::read_to_string(rootfs.join("last")).expect("/last"),
        "last\n"
    );

    // A changed file on B re-runs only what depends on it.
    fs::write(ctx.join("b.txt"), "b on machine b\n").expect("write");
    let r = build_ok(&b, &["--cache-from", &from, "-t", "app:1", c]);
    assert_eq!(
        short(ran(&r.stderr)),
        [
            "COPY b.txt /b.txt",
            "RUN echo $V > /v",
            "RUN echo last > /last"
        ],
        "{}",
        r.stderr
    );

    // A damaged or missing cache only misses: the build still succeeds.
    let c_fresh = tmp.path().join("machine-c");
    import_pinned_busybox(&c_fresh);
    // Every layer blob (gzip) gets one byte flipped; the records still name them.
    let mut corrupted = 0;
    for entry in fs::read_dir(cache_dir.join("blobs/sha256")).expect("blobs") {
        let path = entry.expect("entry").path();
        let mut bytes = fs::read(&path).expect("read blob");
        if bytes.starts_with(&[0x1f, 0x8b]) {
            let last = bytes.len() - 1;
            bytes[last] ^= 0xff;
            fs::write(&path, bytes).expect("corrupt a blob");
            corrupted += 1;
        }
    }
    assert!(corrupted >= 5, "{corrupted} layer blobs corrupted");
    let r = build_ok(&c_fresh, &["--cache-from", &from, "-t", "app:1", c]);
    assert_eq!(
        short(ran(&r.stderr)).len(),
        5,
        "no record with a damaged blob is taken:\n{}",
        r.stderr
    );
    let rootfs = unpack(&c_fresh, "app:1", &tmp.path().join("unpack-c")).expect("unpack");
    assert_eq!(fs::read_to_string(rootfs.join("a2")).expect("/a2"), "a\n");
    let missing = format!("type=local,src={}", tmp.path().join("nowhere").display());
    let r = build_ok(&c_fresh, &["--cache-from", &missing, "-t", "app:2", c]);
    assert!(
        r.stderr.contains("WARNING: importing cache"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_private_cache_mount_in_use_gives_another_instance() {
    let tmp = scratch("build-cache-private");
    let root = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    import_busybox_image(&root);
    fs::create_dir_all(&ctx).expect("mkdir");
    // Two independent stages run at once; each lists the cache, then leaves a file in
    // it while it holds it for 3 s. `private` gives the second one its own instance,
    // so neither sees the other's file (`locked` would make the second wait and see
    // the first's).
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox AS a\n\
         RUN --mount=type=cache,id=p,sharing=private,target=/c ls /c > /seen-a && touch /c/from-a && sleep 3\n\
         FROM busybox AS b\n\
         RUN --mount=type=cache,id=p,sharing=private,target=/c ls /c > /seen-b && touch /c/from-b && sleep 3\n\
         FROM busybox\nCOPY --from=a /seen-a /\nCOPY --from=b /seen-b /\n",
    )
    .expect("write");
    let c = ctx.to_str().expect("utf-8");
    build_ok(&root, &["--jobs", "2", "-t", "private:1", c]);
    let rootfs = unpack(&root, "private:1", &tmp.path().join("unpack")).expect("unpack");
    assert_eq!(
        fs::read_to_string(rootfs.join("seen-a")).expect("/seen-a"),
        ""
    );
    assert_eq!(
        fs::read_to_string(rootfs.join("seen-b")).expect("/seen-b"),
        ""
    );
    // Both instances persist for later steps.
    let instances: Vec<String> = fs::read_dir(root.join("cache/mounts"))
        .expect("cache mounts")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert_eq!(instances.len(), 2, "{instances:?}");
}
