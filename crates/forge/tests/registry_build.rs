//! `forge build` with a registry (Debian's `docker-registry` on a free loopback port): a
//! FROM image missing from the store is pulled (and a pinned one never needs the network
//! again), `--push` and `--output type=registry` push the result where skopeo sees it, and
//! a build cache shared through the registry serves a machine that starts empty.

#[path = "support/build.rs"]
mod build_support;
#[path = "support/registry.rs"]
mod registry;
mod support;

use std::fs;
use std::path::Path;
use std::process::Command;

use build_support::{cached, ran, steps, unpack};
use registry::{Registry, RegistryOptions};
use support::*;

/// `forge --root ROOT ARGS…` with this test's (empty) registry configuration and no proxy.
fn cmd(config: &Path, root: &Path, args: &[&str]) -> Command {
    let mut c = forge(root);
    c.args(args)
        .env("FORGE_CONFIG", config)
        .env_remove("DOCKER_CONFIG");
    for v in ["http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"] {
        c.env_remove(v);
    }
    c
}

fn must(config: &Path, root: &Path, args: &[&str]) -> Run {
    let r = output(&mut cmd(config, root, args));
    assert!(
        r.ok,
        "forge {args:?} failed ({:?}):\n{}\n{}",
        r.code, r.stdout, r.stderr
    );
    r
}

/// Machine A's store with busybox imported (pinned, so every store has the same image)
/// and pushed to the registry as `base:1`; returns the name there.
fn base_in_registry(config: &Path, root: &Path, reg: &Registry) -> String {
    let tar = busybox_tar();
    let r = output(
        cmd(
            config,
            root,
            &["import", "-c", "CMD [\"/bin/sh\"]", "-c", "ENV PATH=/bin"],
        )
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .arg(&tar)
        .arg("busybox:latest"),
    );
    assert!(r.ok, "import: {}", r.stderr);
    let name = format!("{}/base:1", reg.host());
    must(config, root, &["push", "busybox:latest", &name]);
    name
}

#[test]
fn from_pulls_a_missing_base_and_push_sends_the_result() {
    let tmp = scratch("registry-build");
    let config = tmp.path().join("forge/config.json");
    let reg = Registry::start(&tmp.path().join("registry"), &RegistryOptions::default());
    let base = base_in_registry(&config, &tmp.path().join("a"), &reg);

    // Machine B has nothing: FROM pulls the base.
    let b = tmp.path().join("b");
    let ctx = tmp.path().join("ctx");
    fs::create_dir_all(&ctx).expect("mkdir");
    fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {base}\nRUN echo built > /built\n"),
    )
    .expect("write");
    let c = ctx.to_str().expect("utf-8");
    let app = format!("{}/app:1", reg.host());
    must(
        &config,
        &b,
        &["build", "--progress=plain", "-t", &app, "--push", c],
    );
    let r = output(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{app}"),
    ]));
    assert!(r.ok, "skopeo sees the pushed image: {}", r.stderr);
    let layers = serde_json::from_str::<serde_json::Value>(&r.stdout).expect("json")["Layers"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(layers, 2, "{}", r.stdout);
    assert!(must(&config, &b, &["images"]).stdout.contains("/base"));

    // --output type=registry pushes under another name.
    let other = format!("{}/other:2", reg.host());
    must(
        &config,
        &b,
        &[
            "build",
            "--progress=plain",
            "--output",
            &format!("type=registry,name={other}"),
            c,
        ],
    );
    let r = output(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{other}"),
    ]));
    assert!(r.ok, "{}", r.stderr);

    // Pinned by digest and present: no network needed.
    let digest = must(&config, &b, &["images", "--digests", "--format", "json"]).stdout;
    let digest = digest
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| {
            v["Repository"]
                .as_str()
                .is_some_and(|r| r.ends_with("/base"))
        })
        .and_then(|v| v["Digest"].as_str().map(str::to_string))
        .expect("base digest");
    reg.stop();
    fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {}/base@{digest}\nRUN echo pinned > /pinned\n",
            reg.host()
        ),
    )
    .expect("write");
    let r = must(
        &config,
        &b,
        &["build", "--progress=plain", "-t", "pinned:1", c],
    );
    assert!(!ran(&r.stderr).is_empty(), "{}", r.stderr);
    // A missing base with the registry gone: a clear error naming it.
    fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {}/nothere:1\n", reg.host()),
    )
    .expect("write");
    let r = output(&mut cmd(&config, &b, &["build", "--progress=plain", c]));
    assert!(!r.ok);
    assert!(
        r.stderr.contains("nothere"),
        "the error names the image:\n{}",
        r.stderr
    );
}

#[test]
fn a_cache_shared_through_the_registry_serves_an_empty_machine() {
    let tmp = scratch("registry-cache");
    let config = tmp.path().join("forge/config.json");
    let reg = Registry::start(&tmp.path().join("registry"), &RegistryOptions::default());
    let a = tmp.path().join("a");
    let base = base_in_registry(&config, &a, &reg);
    let ctx = tmp.path().join("ctx");
    fs::create_dir_all(&ctx).expect("mkdir");
    fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {base}\nCOPY a.txt /a.txt\nRUN cat /a.txt > /a2\nCOPY b.txt /b.txt\nRUN cat /b.txt > /b2\n"
        ),
    )
    .expect("write");
    fs::write(ctx.join("a.txt"), "a\n").expect("write");
    fs::write(ctx.join("b.txt"), "b\n").expect("write");
    let c = ctx.to_str().expect("utf-8");
    let cache = format!("{}/app:buildcache", reg.host());

    let r = must(
        &config,
        &a,
        &[
            "build",
            "--progress=plain",
            "--cache-to",
            &format!("type=registry,ref={cache},mode=max"),
            "-t",
            "app:1",
            c,
        ],
    );
    assert_eq!(ran(&r.stderr).len(), 4, "{}", r.stderr);
    let r = output(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{cache}"),
    ]));
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stdout.contains("application/vnd.forge.buildcache.v1"),
        "{}",
        r.stdout
    );

    // Machine B starts empty: the base comes from the registry, every step from the cache.
    let b = tmp.path().join("b");
    let from = format!("type=registry,ref={cache}");
    let r = must(
        &config,
        &b,
        &[
            "build",
            "--progress=plain",
            "--cache-from",
            &from,
            "-t",
            "app:1",
            c,
        ],
    );
    let s = steps(&r.stderr);
    assert_eq!(s.len(), 4, "{}", r.stderr);
    assert!(
        s.iter().all(|s| s.cached && !s.done),
        "every step CACHED, none run:\n{}",
        r.stderr
    );
    let rootfs = unpack(&b, "app:1", &tmp.path().join("unpack")).expect("unpack");
    assert_eq!(fs::read_to_string(rootfs.join("b2")).expect("/b2"), "b\n");

    // A changed file on B re-runs only what depends on it.
    fs::write(ctx.join("b.txt"), "b changed\n").expect("write");
    let r = must(
        &config,
        &b,
        &[
            "build",
            "--progress=plain",
            "--cache-from",
            &from,
            "-t",
            "app:1",
            c,
        ],
    );
    assert_eq!(
        ran(&r.stderr)
            .iter()
            .map(|n| n
                .split_once("] ")
                .map_or(n.as_str(), |(_, r)| r)
                .to_string())
            .collect::<Vec<_>>(),
        ["COPY b.txt /b.txt", "RUN cat /b.txt > /b2"],
        "{}",
        r.stderr
    );
    assert_eq!(cached(&r.stderr).len(), 2, "{}", r.stderr);

    // A cache reference that does not exist only misses.
    let c2 = tmp.path().join("c");
    let r = must(
        &config,
        &c2,
        &[
            "build",
            "--progress=plain",
            "--cache-from",
            &format!("type=registry,ref={}/nothing:here", reg.host()),
            "-t",
            "app:1",
            c,
        ],
    );
    assert!(
        r.stderr.contains("WARNING: importing cache"),
        "{}",
        r.stderr
    );
    assert_eq!(ran(&r.stderr).len(), 4, "{}", r.stderr);
}
