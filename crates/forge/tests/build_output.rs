//! `forge build --output` and `--metadata-file`: the result also goes to an
//! oci-archive and a docker-archive that skopeo reads, a tar and a directory
//! of the final root filesystem, and buildx's metadata JSON.

#[path = "support/build.rs"]
mod build_support;
mod support;

use build_support::*;
use std::fs;
use std::process::Command;

#[test]
fn outputs_and_metadata_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("store");
    import_busybox_image(&root);
    let ctx = tmp.path().join("ctx");
    fs::create_dir_all(&ctx).expect("mkdir");
    fs::write(ctx.join("hello.txt"), "hello\n").expect("write");
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nCOPY hello.txt /srv/\nRUN rm /etc/group && echo built > /srv/built\n",
    )
    .expect("write");
    let out = tmp.path().join("out");
    let arg = |kind: &str, name: &str| format!("type={kind},dest={}", out.join(name).display());
    let meta = out.join("meta.json");
    fs::create_dir_all(&out).expect("mkdir");
    build_ok(
        &root,
        &[
            "-t",
            "outputs:1",
            "-o",
            &arg("oci", "image.oci.tar"),
            "-o",
            &arg("docker", "image.docker.tar"),
            "-o",
            &arg("tar", "rootfs.tar"),
            "-o",
            &arg("local", "rootfs"),
            "--metadata-file",
            meta.to_str().expect("utf-8"),
            ctx.to_str().expect("utf-8"),
        ],
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&fs::read(&meta).expect("metadata file")).expect("json");
    assert_eq!(meta["image.name"], "docker.io/library/outputs:1");
    let digest = meta["containerimage.digest"]
        .as_str()
        .expect("digest")
        .to_string();
    assert!(digest.starts_with("sha256:"), "{meta}");
    let inspect = |transport: &str| {
        let o = Command::new("skopeo")
            .args(["inspect", "--raw", transport])
            .output()
            .expect("skopeo");
        assert!(
            o.status.success(),
            "{transport}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o.stdout
    };
    let oci = inspect(&format!(
        "oci-archive:{}",
        out.join("image.oci.tar").display()
    ));
    let oci_digest = format!("sha256:{}", sha256_hex(&oci));
    assert_eq!(
        oci_digest, digest,
        "the oci-archive holds the built manifest"
    );
    inspect(&format!(
        "docker-archive:{}",
        out.join("image.docker.tar").display()
    ));
    // The root filesystem, whiteouts applied: /etc/group is gone.
    let local = out.join("rootfs");
    assert_eq!(
        fs::read_to_string(local.join("srv/hello.txt")).expect("copied"),
        "hello\n"
    );
    assert_eq!(
        fs::read_to_string(local.join("srv/built")).expect("built"),
        "built\n"
    );
    assert!(local.join("bin/busybox").is_file());
    assert!(!local.join("etc/group").exists());
    let listing = Command::new("tar")
        .arg("-tf")
        .arg(out.join("rootfs.tar"))
        .output()
        .expect("tar");
    let names = String::from_utf8_lossy(&listing.stdout);
    assert!(
        names
            .lines()
            .any(|l| l.trim_start_matches("./") == "srv/built"),
        "{names}"
    );
    assert!(
        !names.lines().any(|l| l.contains(".wh.")),
        "a rootfs tar has no whiteouts"
    );
    assert!(!names
        .lines()
        .any(|l| l.trim_start_matches("./") == "etc/group"));

    // `-o -` and `dest=-`: the archive on stdout, which then carries nothing else
    // (not even -q's image id): the bytes the same output writes to a file.
    let ctx_arg = ctx.to_str().expect("utf-8");
    let epoch = [("SOURCE_DATE_EPOCH", "0")];
    for (kind, spec) in [
        ("tar", "-"),
        ("tar", "type=tar,dest=-"),
        ("oci", "type=oci,dest=-"),
    ] {
        let file = out.join(format!("again.{kind}"));
        let to_file = format!("type={kind},dest={}", file.display());
        let r = build(&root, &["-q", "-o", &to_file, ctx_arg], &epoch);
        assert!(r.ok, "{to_file}: {}", r.stderr);
        let o = support::forge(&root)
            .args(["build", "-q", "-o", spec, ctx_arg])
            .env("SOURCE_DATE_EPOCH", "0")
            .output()
            .expect("forge build");
        assert!(
            o.status.success(),
            "{spec}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let on_disk = fs::read(&file).expect("file output");
        assert!(
            o.stdout == on_disk,
            "{spec}: stdout is not what {to_file} wrote ({} vs {} bytes)",
            o.stdout.len(),
            on_disk.len()
        );
    }
    let r = build(&root, &["-o", "-", "-o", "type=oci,dest=-", ctx_arg], &[]);
    assert!(!r.ok && r.stderr.contains("only one --output can write to stdout"));
}

fn sha256_hex(bytes: &[u8]) -> String {
    let o = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(bytes)?;
            c.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8_lossy(&o.stdout)[..64].to_string()
}

/// Runs `forge build ARGS` with standard error on a pseudo-terminal of 100×40 and
/// returns what the terminal received.
fn build_on_a_terminal(root: &std::path::Path, args: &[&str]) -> (bool, String) {
    use std::io::Read as _;
    let pty = nix::pty::openpty(
        Some(&nix::pty::Winsize {
            ws_row: 40,
            ws_col: 100,
            ws_xpixel: 0,
            ws_ypixel: 0,
        }),
        None,
    )
    .expect("openpty");
    let mut cmd = support::forge(root);
    cmd.arg("build")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::from(pty.slave));
    let mut child = cmd.spawn().expect("spawn forge");
    // Our copy of the slave went into the command: once forge exits the master reads
    // EIO, which ends the capture.
    drop(cmd);
    let mut master = std::fs::File::from(pty.master);
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    let status = child.wait().expect("wait forge");
    (
        status.success(),
        String::from_utf8_lossy(&seen).into_owned(),
    )
}

#[test]
fn progress_auto_is_a_live_view_on_a_terminal() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("store");
    import_busybox_image(&root);
    let ctx = tmp.path().join("ctx");
    fs::create_dir_all(&ctx).expect("mkdir");
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN echo step-output && sleep 0.5\nRUN echo two > /two\n",
    )
    .expect("write");
    let c = ctx.to_str().expect("utf-8");
    let (ok, screen) = build_on_a_terminal(&root, &["-t", "live:1", c]);
    assert!(ok, "build failed:\n{screen}");
    assert!(screen.contains("[+] Building"), "{screen}");
    assert!(
        screen.contains(" FINISHED"),
        "the last frame says FINISHED:\n{screen}"
    );
    assert!(
        screen.contains(" => [stage-0 2/3] RUN echo step-output && sleep 0.5"),
        "{screen}"
    );
    assert!(
        screen.contains("\x1b[2K"),
        "frames are redrawn in place:\n{screen}"
    );
    assert!(
        !screen.contains("#1 "),
        "no plain progress on a terminal:\n{screen}"
    );
    assert!(
        screen.lines().all(|l| l.chars().count() <= 100 + 16),
        "lines fit the terminal's width (escape codes aside):\n{screen}"
    );
    // A rebuild shows the steps as CACHED.
    let (ok, screen) = build_on_a_terminal(&root, &["-t", "live:1", c]);
    assert!(ok, "rebuild failed:\n{screen}");
    assert!(
        screen.contains(" => CACHED [stage-0 2/3] RUN echo step-output"),
        "{screen}"
    );
    // --progress=plain still gives plain lines on a terminal.
    let (ok, screen) = build_on_a_terminal(&root, &["--progress=plain", "-t", "live:1", c]);
    assert!(ok);
    assert!(
        screen.contains("#1 [stage-0 2/3] RUN echo step-output"),
        "{screen}"
    );
    assert!(!screen.contains("[+] Building"), "{screen}");
}

/// `forge inspect` of a built image reads as docker's: the comment of its last history
/// entry (the config has none of its own: the base's imported comment is not carried
/// over, as BuildKit), CMD's ArgsEscaped.
#[test]
fn inspect_of_a_built_image() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("store");
    import_busybox_image(&root);
    let ctx = tmp.path().join("ctx");
    fs::create_dir_all(&ctx).expect("mkdir");
    fs::write(ctx.join("Dockerfile"), "FROM busybox\nCMD [\"sh\"]\n").expect("write");
    build_ok(&root, &["-t", "inspected:1", ctx.to_str().expect("utf-8")]);
    let v = support::inspect(&root, "inspected:1");
    assert_eq!(v["Comment"], "buildkit.dockerfile.v0", "{v}");
    assert_eq!(v["Config"]["ArgsEscaped"], true, "{v}");
    assert_eq!(v["Config"]["Cmd"], serde_json::json!(["sh"]), "{v}");
    assert!(image_config(&root, "inspected:1").get("comment").is_none());
}
