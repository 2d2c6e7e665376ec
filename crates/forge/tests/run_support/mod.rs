//! Helpers of the `forge run` tests: a store with busybox and a busybox httpd image,
//! free host ports, an HTTP client, and what a container may leak (monitor processes,
//! cgroup directories, mounts).
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::build_support::{build_ok, import_busybox_image};
use crate::support::{ok, run, scratch};

/// A scratch store holding `busybox:latest`.
pub fn store_with_busybox(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = scratch(name);
    let root = tmp.path().join("store");
    import_busybox_image(&root);
    (tmp, root)
}

/// Builds `web:1`: busybox's httpd serving `/www/index.html` on port 80.
pub fn build_web(tmp: &Path, root: &Path) {
    let ctx = tmp.join("web-ctx");
    fs::create_dir_all(&ctx).expect("mkdir");
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN mkdir /www && echo hello-from-web > /www/index.html\nEXPOSE 80\n\
         CMD [\"httpd\", \"-f\", \"-v\", \"-p\", \"80\", \"-h\", \"/www\"]\n",
    )
    .expect("write");
    build_ok(root, &["-t", "web:1", ctx.to_str().expect("utf-8")]);
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// `GET /` on 127.0.0.1:`port`, retried until something answers (the server in the
/// container may still be starting); returns the whole response.
pub fn http_get(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })();
        match attempt {
            Ok(body) if !body.is_empty() => return body,
            other => {
                assert!(Instant::now() < deadline, "GET 127.0.0.1:{port}: {other:?}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Polls `f` until it returns true, for at most `secs` seconds.
pub fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// `forge ps -a --format json`, one object per container.
pub fn ps_json(root: &Path) -> Vec<serde_json::Value> {
    ok(root, &["ps", "-a", "--format", "json"])
        .lines()
        .map(|l| serde_json::from_str(l).expect("ps JSON line"))
        .collect()
}

/// The `ps` entry of container `name`.
pub fn ps_entry(root: &Path, name: &str) -> serde_json::Value {
    ps_json(root)
        .into_iter()
        .find(|c| c["Names"] == name)
        .unwrap_or_else(|| panic!("{name} in ps -a"))
}

/// `forge inspect -f TEMPLATE NAME`.
pub fn inspect_field(root: &Path, name: &str, template: &str) -> String {
    ok(root, &["inspect", "-f", template, name])
        .trim()
        .to_owned()
}

/// The full id of a container.
pub fn container_id(root: &Path, name: &str) -> String {
    inspect_field(root, name, "{{.Id}}")
}

/// Processes whose command line mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").expect("/proc") {
        let e = e.expect("entry");
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmd) = fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) && pid != std::process::id() {
                out.push(pid);
            }
        }
    }
    out
}

/// The cgroup directories named after container `id` in any hierarchy.
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir("/sys/fs/cgroup") else {
        return out;
    };
    for h in entries.flatten() {
        for candidate in [h.path().join("forge").join(id), h.path().join(id)] {
            if candidate.exists() {
                out.push(candidate);
            }
        }
    }
    if Path::new("/sys/fs/cgroup/forge").join(id).exists() {
        out.push(Path::new("/sys/fs/cgroup/forge").join(id));
    }
    out
}

/// Lines of this process's mountinfo that mention `path`.
pub fn mounts_under(path: &Path) -> Vec<String> {
    let text = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let p = path.to_string_lossy();
    text.lines()
        .filter(|l| l.contains(p.as_ref()))
        .map(str::to_owned)
        .collect()
}

/// Runs `forge ARGS` and asserts exit status `code`; returns (stdout, stderr).
pub fn expect_code(root: &Path, args: &[&str], code: i32) -> (String, String) {
    let r = run(root, args);
    assert_eq!(
        r.code,
        Some(code),
        "exit status of forge {args:?}:\n{}\n{}",
        r.stdout,
        r.stderr
    );
    (r.stdout, r.stderr)
}

/// Monitor processes of the store at `root` (not the sandbox processes forked from
/// them, which share the command line but are named `forge-sandbox`/`forge-init`).
pub fn monitors(root: &Path) -> Vec<u32> {
    processes_mentioning(&format!("{} container-monitor", root.display()))
        .into_iter()
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "forge")
        })
        .collect()
}
