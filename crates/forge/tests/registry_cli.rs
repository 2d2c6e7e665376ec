//! `forge pull`, `push`, `login`, `logout`, `search` and `info` against Debian's
//! `docker-registry` started on a free loopback port per test: round trips with skopeo
//! as the peer, basic auth, TLS with a private CA, faults injected by a proxy (corrupt
//! byte, 500, a cut connection, the registry killed mid-transfer), and mirrors.

#[path = "support/registry.rs"]
mod registry;
mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use registry::{Fault, FaultProxy, Registry, RegistryOptions};
use support::*;

/// A store, a config file and a credentials directory of one test.
struct Env {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    root: PathBuf,
    config: PathBuf,
}

impl Env {
    fn new(name: &str) -> Env {
        let tmp = scratch(name);
        let dir = tmp.path().to_path_buf();
        Env {
            root: dir.join("store"),
            config: dir.join("forge/config.json"),
            dir,
            _tmp: tmp,
        }
    }

    /// `forge` on this test's store and config, with no docker config of the machine.
    fn cmd(&self, root: &Path, args: &[&str]) -> Command {
        let mut c = forge(root);
        c.args(args)
            .env("FORGE_CONFIG", &self.config)
            .env_remove("DOCKER_CONFIG");
        // The registries are on loopback; a proxy of the machine must not get between.
        for v in [
            "http_proxy",
            "https_proxy",
            "all_proxy",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
        ] {
            c.env_remove(v);
        }
        c
    }

    fn run_in(&self, root: &Path, args: &[&str]) -> Run {
        output(&mut self.cmd(root, args))
    }

    fn ok_in(&self, root: &Path, args: &[&str]) -> String {
        let r = self.run_in(root, args);
        assert!(
            r.ok,
            "forge {args:?} failed ({:?}):\n{}\n{}",
            r.code, r.stdout, r.stderr
        );
        r.stdout
    }

    fn ok(&self, args: &[&str]) -> String {
        self.ok_in(&self.root, args)
    }

    /// Runs, asserts docker's exit status 1 and an `Error:` line; returns stderr.
    fn fails_in(&self, root: &Path, args: &[&str]) -> String {
        let r = self.run_in(root, args);
        assert!(!r.ok, "forge {args:?} should fail:\n{}", r.stdout);
        assert_eq!(
            r.code,
            Some(1),
            "exit status of forge {args:?}: {}",
            r.stderr
        );
        assert!(
            r.stderr.lines().any(|l| l.starts_with("Error: ")),
            "docker-style error from forge {args:?}: {}",
            r.stderr
        );
        r.stderr
    }

    fn write_config(&self, json: &str) {
        fs::create_dir_all(self.config.parent().expect("parent")).expect("mkdir");
        fs::write(&self.config, json).expect("write config");
    }
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn skopeo_copy(flags: &[&str], from: &str, to: &str) {
    sh(Command::new("skopeo")
        .args(["copy", "--quiet"])
        .args(flags)
        .args([from, to]));
}

fn skopeo_digest(image: &str) -> String {
    let out = sh(Command::new("skopeo").args(["inspect", "--tls-verify=false", image]));
    let v: serde_json::Value = serde_json::from_str(&out).expect("skopeo JSON");
    v["Digest"].as_str().expect("Digest").to_string()
}

/// The layer blob digest (hex) of a single-layer image in a store.
fn layer_hex(root: &Path, image: &str) -> String {
    let v = inspect(root, image);
    let manifest = manifest_digest(root, image);
    let bytes = fs::read(
        root.join("blobs/sha256")
            .join(manifest.trim_start_matches("sha256:")),
    )
    .expect("manifest blob");
    let m: serde_json::Value = serde_json::from_slice(&bytes).expect("manifest JSON");
    assert!(v["Id"].is_string());
    m["layers"][0]["digest"]
        .as_str()
        .expect("layer digest")
        .trim_start_matches("sha256:")
        .to_string()
}

/// Nothing half-written is left: every blob hashes to its name and `tmp/` holds nothing
/// staged (no blob, no half-unpacked snapshot).
fn assert_store_clean(root: &Path) {
    assert_blobs_intact(root);
    let staged = list(&root.join("tmp"));
    assert!(staged.is_empty(), "left in tmp/: {staged:?}");
}

#[test]
fn push_then_pull_round_trip_keeps_digests_and_skopeo_sees_it() {
    let env = Env::new("reg-roundtrip");
    let reg = Registry::start(&env.dir.join("registry"), &RegistryOptions::default());
    let host = reg.host();
    let id = import_busybox(&env.root, "app:1.0");
    let manifest = manifest_digest(&env.root, "app:1.0");

    let dest = format!("{host}/team/app:1.0");
    let out = env.ok(&["push", "app:1.0", &dest]);
    assert!(
        out.starts_with(&format!(
            "The push refers to repository [{host}/team/app]\n"
        )),
        "{out}"
    );
    assert!(out.contains(": Pushed\n"), "{out}");
    assert!(
        out.ends_with(&format!("1.0: digest: {manifest} size: {}\n", {
            fs::metadata(
                env.root
                    .join("blobs/sha256")
                    .join(manifest.trim_start_matches("sha256:")),
            )
            .expect("manifest blob")
            .len()
        })),
        "{out}"
    );
    assert_eq!(skopeo_digest(&format!("docker://{dest}")), manifest);

    // A second push finds everything there.
    let again = env.ok(&["push", "app:1.0", &dest]);
    assert!(again.contains(": Layer already exists\n"), "{again}");

    // A fresh store pulls it back with the same manifest and config.
    let fresh = env.dir.join("fresh");
    let out = env.ok_in(&fresh, &["pull", &dest]);
    let layer = layer_hex(&env.root, "app:1.0");
    assert_eq!(
        out,
        format!(
            "1.0: Pulling from team/app\n{short}: Pulling fs layer\n{short}: Download complete\n{short}: Pull complete\nDigest: {manifest}\nStatus: Downloaded newer image for {dest}\n{dest}\n",
            short = &layer[..12]
        )
    );
    assert_eq!(manifest_digest(&fresh, &dest), manifest);
    let v = inspect(&fresh, &dest);
    assert_eq!(v["Id"], id.as_str());
    assert_eq!(
        v["RepoDigests"][0],
        format!("{host}/team/app@{manifest}").as_str()
    );
    assert_store_clean(&fresh);
    // Pulled images are ordinary images: listed, saved, and up to date on a re-pull.
    let images = env.ok_in(&fresh, &["images"]);
    assert!(images.contains(&format!("{host}/team/app")), "{images}");
    let again = env.ok_in(&fresh, &["pull", &dest]);
    assert!(again.contains("Already exists"), "{again}");
    assert!(
        again.contains(&format!("Status: Image is up to date for {dest}")),
        "{again}"
    );
    let saved = env.dir.join("saved.tar");
    env.ok_in(&fresh, &["save", "-o", p(&saved), &dest]);

    // Pushing the pulled image to another repository mounts the blob.
    let other = format!("{host}/team/copy:2");
    let out = env.ok_in(&fresh, &["push", &dest, &other]);
    assert!(out.contains(": Mounted from team/app\n"), "{out}");
    assert_eq!(skopeo_digest(&format!("docker://{other}")), manifest);

    // By digest, and `Using default tag`.
    let by_digest = format!("{host}/team/app@{manifest}");
    let d = env.dir.join("bydigest");
    let out = env.ok_in(&d, &["pull", &by_digest]);
    assert!(out.ends_with(&format!("{by_digest}\n")), "{out}");
    env.ok(&["tag", "app:1.0", &format!("{host}/team/app:latest")]);
    env.ok(&["push", &format!("{host}/team/app")]);
    let out = env.ok_in(&d, &["pull", &format!("{host}/team/app")]);
    assert!(out.starts_with("Using default tag: latest\n"), "{out}");

    // search lists the catalog.
    let out = env.ok(&["search", &format!("{host}/team")]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{out}");
    assert!(
        lines[0].contains("DESCRIPTION")
            && lines[0].contains("STARS")
            && lines[0].contains("OFFICIAL")
    );
    assert!(out.contains(&format!("{host}/team/app ")), "{out}");
    assert!(out.contains(&format!("{host}/team/copy ")), "{out}");
    let out = env.ok(&["search", "--limit", "1", &format!("{host}/team")]);
    assert_eq!(out.lines().count(), 2, "{out}");

    // An unknown image is a clear error, and nothing is named.
    let err = env.fails_in(&fresh, &["pull", &format!("{host}/team/nope:1")]);
    assert!(
        err.contains("not found") && err.contains("manifest unknown"),
        "{err}"
    );
}

#[test]
fn skopeo_pushed_image_is_pulled_with_its_rootfs() {
    let env = Env::new("reg-skopeo");
    let reg = Registry::start(&env.dir.join("registry"), &RegistryOptions::default());
    import_busybox(&env.root, "bb:1");
    let archive = env.dir.join("bb.tar");
    env.ok(&["save", "--format", "oci-archive", "-o", p(&archive), "bb:1"]);
    // docker v2 schema 2 media types, as most registries' images have.
    let dest = format!("{}/sk/bb:v2s2", reg.host());
    skopeo_copy(
        &["--format", "v2s2", "--dest-tls-verify=false"],
        &format!("oci-archive:{}:bb:1", p(&archive)),
        &format!("docker://{dest}"),
    );
    let digest = skopeo_digest(&format!("docker://{dest}"));
    let fresh = env.dir.join("fresh");
    let out = env.ok_in(&fresh, &["pull", &dest]);
    assert!(out.contains(&format!("Digest: {digest}\n")), "{out}");
    let v = inspect(&fresh, &dest);
    let diff_id = v["RootFS"]["Layers"][0].as_str().expect("diff id");
    // One layer: its chain id is its diff id; the snapshot is the busybox tree.
    let fs_dir = fresh
        .join("snapshots")
        .join(diff_id.trim_start_matches("sha256:"))
        .join("fs");
    let diff = output(
        Command::new("diff")
            .arg("-r")
            .arg("--no-dereference")
            .arg(busybox_rootfs())
            .arg(&fs_dir),
    );
    assert!(diff.ok, "rootfs differs:\n{}{}", diff.stdout, diff.stderr);
    assert_store_clean(&fresh);
    // And it pushes back as it is (docker media types kept, same digest).
    let back = format!("{}/sk/back:1", reg.host());
    env.ok_in(&fresh, &["push", &dest, &back]);
    assert_eq!(skopeo_digest(&format!("docker://{back}")), digest);
    // `forge run` of an image the store lacks pulls it first, as docker's run: the
    // pull's lines on stderr, stdout only the container's.
    let runner = env.dir.join("runner");
    let r = env.run_in(
        &runner,
        &["run", "--rm", &dest, "sh", "-c", "echo ran; exit 7"],
    );
    assert_eq!(r.code, Some(7), "{}", r.stderr);
    assert_eq!(r.stdout, "ran\n");
    assert!(
        r.stderr
            .contains(&format!("Unable to find image '{dest}' locally")),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!("Digest: {digest}")),
        "{}",
        r.stderr
    );
    // Present now: no pull; --pull never of a missing one fails as docker (125).
    let r = env.run_in(&runner, &["run", "--rm", &dest, "true"]);
    assert_eq!((r.code, r.stderr.as_str()), (Some(0), ""));
    let missing = format!("{}/sk/none:1", reg.host());
    let r = env.run_in(
        &runner,
        &["run", "--rm", "--pull", "never", &missing, "true"],
    );
    assert_eq!(r.code, Some(125));
    assert!(r.stderr.contains("No such image"), "{}", r.stderr);
    let r = env.run_in(&runner, &["run", "--rm", &missing, "true"]);
    assert_eq!(r.code, Some(125), "{}", r.stderr);
    assert!(r.stderr.contains("Unable to find image"), "{}", r.stderr);
}

#[test]
fn basic_auth_needs_login() {
    let env = Env::new("reg-auth");
    let htpasswd = env.dir.join("htpasswd");
    sh(Command::new("htpasswd").args(["-Bbc", p(&htpasswd), "forgeuser", "s3cret pass"]));
    let reg = Registry::start(
        &env.dir.join("registry"),
        &RegistryOptions {
            htpasswd: Some(htpasswd),
            tls: None,
        },
    );
    let host = reg.host();
    import_busybox(&env.root, "app:1");
    let dest = format!("{host}/auth/app:1");
    let err = env.fails_in(&env.root, &["push", "app:1", &dest]);
    assert!(err.contains("unauthorized"), "{err}");

    // Wrong password: refused, nothing stored.
    let mut c = env.cmd(
        &env.root,
        &["login", "-u", "forgeuser", "--password-stdin", &host],
    );
    let r = output_with_stdin(&mut c, "wrong\n");
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("unauthorized"), "{}", r.stderr);
    assert!(
        !env.config.exists()
            || !fs::read_to_string(&env.config)
                .expect("read")
                .contains(&host)
    );

    let mut c = env.cmd(
        &env.root,
        &["login", "-u", "forgeuser", "--password-stdin", &host],
    );
    let r = output_with_stdin(&mut c, "s3cret pass\n");
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.stdout, "Login Succeeded\n");
    let stored: serde_json::Value =
        serde_json::from_slice(&fs::read(&env.config).expect("credentials")).expect("JSON");
    // docker's format: base64 of user:password.
    assert_eq!(
        stored["auths"][&host]["auth"],
        "Zm9yZ2V1c2VyOnMzY3JldCBwYXNz"
    );
    env.ok(&["push", "app:1", &dest]);
    let fresh = env.dir.join("fresh");
    env.ok_in(&fresh, &["pull", &dest]);

    // $DOCKER_CONFIG wins over forge's config dir.
    let docker_dir = env.dir.join("docker");
    let mut c = env.cmd(&env.root, &["pull", &dest]);
    c.env("DOCKER_CONFIG", &docker_dir);
    let r = output(&mut c);
    assert!(!r.ok && r.stderr.contains("unauthorized"), "{}", r.stderr);

    let out = env.ok(&["logout", &host]);
    assert_eq!(out, format!("Removing login credentials for {host}\n"));
    let err = env.fails_in(&env.dir.join("fresh2"), &["pull", &dest]);
    assert!(err.contains("unauthorized"), "{err}");
    assert_eq!(
        env.ok(&["logout", &host]),
        format!("Not logged in to {host}\n")
    );
}

fn output_with_stdin(c: &mut Command, input: &str) -> Run {
    use std::io::Write as _;
    let mut child = c
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn forge");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    Run {
        ok: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn tls_registry_with_private_ca() {
    let env = Env::new("reg-tls");
    let pki = env.dir.join("pki");
    fs::create_dir_all(&pki).expect("mkdir");
    let ossl = |args: &[&str]| {
        sh(Command::new("openssl").current_dir(&pki).args(args));
    };
    ossl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=forge test CA",
    ]);
    ossl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    fs::write(
        pki.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    ossl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    let reg = Registry::start(
        &env.dir.join("registry"),
        &RegistryOptions {
            htpasswd: None,
            tls: Some((pki.join("server.crt"), pki.join("server.key"))),
        },
    );
    let host = reg.host();
    import_busybox(&env.root, "app:1");
    let dest = format!("{host}/tls/app:1");

    // Without the CA: a clear TLS error, no silent fallback to plain HTTP.
    let err = env.fails_in(&env.root, &["push", "app:1", &dest]);
    assert!(
        err.contains("certificate") && err.contains("not trusted") && err.contains("ca.crt"),
        "{err}"
    );

    // With the CA in certs.d beside forge's config: works both ways.
    let ca_dir = env
        .config
        .parent()
        .expect("dir")
        .join("certs.d")
        .join(&host);
    fs::create_dir_all(&ca_dir).expect("mkdir");
    fs::copy(pki.join("ca.crt"), ca_dir.join("ca.crt")).expect("copy CA");
    env.ok(&["push", "app:1", &dest]);
    let fresh = env.dir.join("fresh");
    env.ok_in(&fresh, &["pull", &dest]);
    assert_eq!(
        manifest_digest(&fresh, &dest),
        manifest_digest(&env.root, "app:1")
    );
    fs::remove_dir_all(&ca_dir).expect("rm CA");

    // Declared insecure: TLS without verification.
    env.write_config(&format!(r#"{{"insecure-registries": ["{host}"]}}"#));
    env.ok_in(&env.dir.join("fresh2"), &["pull", &dest]);
}

#[test]
fn faults_leave_nothing_wrong_and_the_command_succeeds_after() {
    let env = Env::new("reg-faults");
    let reg = Registry::start(&env.dir.join("registry"), &RegistryOptions::default());
    import_busybox(&env.root, "app:1");
    env.ok(&["push", "app:1", &format!("{}/f/app:1", reg.host())]);
    let layer = layer_hex(&env.root, "app:1");
    let proxy = FaultProxy::start(reg.port, reg.killer());
    let via = format!("{}/f/app:1", proxy.host());
    let fresh = env.dir.join("fresh");

    // One corrupted byte: refused, nothing kept.
    proxy.set(Fault::Corrupt(layer.clone()));
    let err = env.fails_in(&fresh, &["pull", &via]);
    assert!(err.contains(&layer) && err.contains("hashes to"), "{err}");
    assert!(!fresh.join("blobs/sha256").join(&layer).exists());
    assert!(env.run_in(&fresh, &["inspect", &via]).code != Some(0));
    assert_store_clean(&fresh);
    // The layer was being unpacked as it arrived: no snapshot of it may stay.
    assert_eq!(list(&fresh.join("snapshots")), Vec::<String>::new());

    // A 500 on the blob: retried, then a clear error.
    proxy.set(Fault::Status500(layer.clone()));
    let err = env.fails_in(&fresh, &["pull", &via]);
    assert!(
        err.contains("500") && err.contains("injected failure"),
        "{err}"
    );
    assert!(!fresh.join("blobs/sha256").join(&layer).exists());
    assert_store_clean(&fresh);

    // A passing 500 is retried.
    proxy.set(Fault::Status500Once(layer.clone()));
    let before = proxy.requests().len();
    let passing = env.dir.join("passing");
    env.ok_in(&passing, &["pull", &via]);
    let gets = proxy.requests()[before..]
        .iter()
        .filter(|r| r.starts_with("GET ") && r.contains(&layer))
        .count();
    assert_eq!(gets, 2, "{:?}", proxy.requests());
    assert_store_clean(&passing);

    // A connection cut mid-blob: the download resumes with a Range request.
    proxy.set(Fault::CutOnce(layer.clone(), 200_000));
    let out = env.ok_in(&fresh, &["pull", &via]);
    assert!(out.contains("Pull complete"), "{out}");
    let ranged: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.contains(&layer) && r.contains("range="))
        .collect();
    assert_eq!(ranged.len(), 1, "{:?}", proxy.requests());
    assert!(ranged[0].ends_with("range=bytes=200000-"), "{ranged:?}");
    assert_store_clean(&fresh);
    assert_eq!(
        manifest_digest(&fresh, &via),
        manifest_digest(&env.root, "app:1")
    );

    // The registry dies mid-pull: clear error, nothing half-kept; fine once it is back.
    let fresh2 = env.dir.join("fresh2");
    proxy.set(Fault::KillDuringPull(200_000));
    let err = env.fails_in(&fresh2, &["pull", &via]);
    assert!(err.contains(&layer), "{err}");
    assert!(!fresh2.join("blobs/sha256").join(&layer).exists());
    assert_store_clean(&fresh2);
    assert_eq!(list(&fresh2.join("snapshots")), Vec::<String>::new());
    reg.restart();
    env.ok_in(&fresh2, &["pull", &via]);
    assert_store_clean(&fresh2);

    // The registry dies mid-push: clear error; the same push succeeds once it is back.
    let dest = format!("{}/f/pushed:1", proxy.host());
    proxy.set(Fault::KillDuringPush(100_000));
    let err = env.fails_in(&env.root, &["push", "app:1", &dest]);
    assert!(err.contains(&proxy.host()), "{err}");
    reg.restart();
    env.ok(&["push", "app:1", &dest]);
    assert_eq!(
        skopeo_digest(&format!("docker://{}/f/pushed:1", reg.host())),
        manifest_digest(&env.root, "app:1")
    );
}

#[test]
fn mirrors_are_tried_in_order_for_docker_hub_names() {
    let env = Env::new("reg-mirrors");
    let empty = Registry::start(&env.dir.join("mirror-a"), &RegistryOptions::default());
    let full = Registry::start(&env.dir.join("mirror-b"), &RegistryOptions::default());
    import_busybox(&env.root, "mirrored:1");
    // docker.io/library/mirrored:1 lives on the mirror as library/mirrored:1.
    env.ok(&[
        "push",
        "mirrored:1",
        &format!("{}/library/mirrored:1", full.host()),
    ]);
    // A mirror that is down, one that lacks the image, one that has it.
    let dead = format!("127.0.0.1:{}", registry::free_port());
    env.write_config(&format!(
        r#"{{"registry-mirrors": ["http://{dead}", "http://{}", "http://{}/"]}}"#,
        empty.host(),
        full.host()
    ));
    let fresh = env.dir.join("fresh");
    let r = env.run_in(&fresh, &["pull", "mirrored:1"]);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    for skipped in [&dead, &empty.host()] {
        assert!(
            r.stderr.contains(&format!("mirror http://{skipped}: ")),
            "{}",
            r.stderr
        );
    }
    assert!(
        r.stderr.contains("not found: manifest unknown"),
        "{}",
        r.stderr
    );
    assert!(
        r.stdout.ends_with("docker.io/library/mirrored:1\n"),
        "{}",
        r.stdout
    );
    assert_eq!(
        manifest_digest(&fresh, "mirrored:1"),
        manifest_digest(&env.root, "mirrored:1")
    );

    let info = env.ok(&["info"]);
    assert!(
        info.contains(&format!(
            " Registry Mirrors:\n  http://{dead}/\n  http://{}/\n  http://{}/\n",
            empty.host(),
            full.host()
        )),
        "{info}"
    );
    assert!(
        info.contains(&format!(" Config File: {}\n", p(&env.config))),
        "{info}"
    );
    assert!(
        info.contains(" Insecure Registries:\n  127.0.0.0/8\n"),
        "{info}"
    );
    assert!(
        info.contains(&format!(" Forge Root Dir: {}\n", p(&env.root))),
        "{info}"
    );
}

#[test]
fn bearer_tokens_and_chunked_uploads() {
    let env = Env::new("reg-bearer");
    let reg = Registry::start(&env.dir.join("registry"), &RegistryOptions::default());
    let proxy = FaultProxy::start(reg.port, reg.killer());
    proxy.set_bearer(Some("tok-123"));
    import_busybox(&env.root, "app:1");
    let layer = layer_hex(&env.root, "app:1");
    let layer_size = fs::metadata(env.root.join("blobs/sha256").join(&layer))
        .expect("layer blob")
        .len();
    let dest = format!("{}/tok/app:1", proxy.host());

    // Chunks of 256 KiB: the layer goes up in several PATCH requests.
    env.ok(&["push", "--chunk-size", "262144", "app:1", &dest]);
    let requests = proxy.requests();
    let patches = requests.iter().filter(|r| r.starts_with("PATCH ")).count();
    assert_eq!(
        patches as u64,
        layer_size.div_ceil(262_144),
        "one PATCH per chunk: {requests:?}"
    );
    assert!(
        requests.iter().any(|r| r.starts_with("GET /token?")
            && r.contains("service=forge-test")
            && r.contains("scope=repository%3Atok%2Fapp%3Apull%2Cpush")),
        "{requests:?}"
    );
    assert_eq!(
        skopeo_digest(&format!("docker://{}/tok/app:1", reg.host())),
        manifest_digest(&env.root, "app:1")
    );

    // Pulls get a pull-scoped token.
    let fresh = env.dir.join("fresh");
    env.ok_in(&fresh, &["pull", &dest]);
    assert!(
        proxy
            .requests()
            .iter()
            .any(|r| r.contains("scope=repository%3Atok%2Fapp%3Apull") && !r.contains("push")),
        "{:?}",
        proxy.requests()
    );
    assert_eq!(
        manifest_digest(&fresh, &dest),
        manifest_digest(&env.root, "app:1")
    );
    assert_store_clean(&fresh);
}

#[test]
fn an_index_is_narrowed_to_this_platform() {
    let env = Env::new("reg-index");
    let reg = Registry::start(&env.dir.join("registry"), &RegistryOptions::default());
    let ours = import_busybox(&env.root, "ours:1");
    // A different image for the other platform.
    let ctx = env.dir.join("ctx");
    fs::create_dir_all(&ctx).expect("mkdir");
    fs::write(ctx.join("f"), "other platform\n").expect("write");
    fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY f /f\n").expect("write");
    env.ok(&["build", "-q", "-t", "theirs:1", p(&ctx)]);

    let layout = env.dir.join("layout");
    for name in ["ours:1", "theirs:1"] {
        let archive = env.dir.join("x.tar");
        env.ok(&["save", "--format", "oci-archive", "-o", p(&archive), name]);
        skopeo_copy(
            &[],
            &format!("oci-archive:{}:{name}", p(&archive)),
            &format!("oci:{}:{name}", p(&layout)),
        );
    }
    let index_path = layout.join("index.json");
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(&index_path).expect("index.json")).expect("JSON");
    let entry = |name: &str, arch: &str| {
        let m = index["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name)
            .expect("entry")
            .clone();
        serde_json::json!({
            "mediaType": m["mediaType"],
            "digest": m["digest"],
            "size": m["size"],
            "platform": {"os": "linux", "architecture": arch},
        })
    };
    let host_arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let other_arch = if host_arch == "s390x" {
        "ppc64le"
    } else {
        "s390x"
    };
    // The other platform first: picking the first entry would be wrong.
    let multi = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry("theirs:1", other_arch), entry("ours:1", host_arch)],
    });
    let bytes = serde_json::to_vec(&multi).expect("serialise");
    let digest = sha256_bytes(&bytes);
    fs::write(layout.join("blobs/sha256").join(&digest), &bytes).expect("write index blob");
    let mut top = index.clone();
    top["manifests"]
        .as_array_mut()
        .expect("manifests")
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": format!("sha256:{digest}"),
            "size": bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        }));
    fs::write(&index_path, serde_json::to_vec(&top).expect("JSON")).expect("write");
    let dest = format!("{}/multi/app:1", reg.host());
    skopeo_copy(
        &["--all", "--dest-tls-verify=false"],
        &format!("oci:{}:multi", p(&layout)),
        &format!("docker://{dest}"),
    );

    let fresh = env.dir.join("fresh");
    let out = env.ok_in(&fresh, &["pull", &dest]);
    // docker prints the index digest; the image is this platform's.
    assert!(out.contains(&format!("Digest: sha256:{digest}\n")), "{out}");
    assert_eq!(inspect(&fresh, &dest)["Id"], ours.as_str());
    assert_store_clean(&fresh);

    // --platform takes another entry; one the index lacks is a clear error.
    let theirs = inspect(&env.root, "theirs:1")["Id"].clone();
    let other = env.dir.join("other");
    env.ok_in(
        &other,
        &["pull", "--platform", &format!("linux/{other_arch}"), &dest],
    );
    assert_eq!(inspect(&other, &dest)["Id"], theirs);
    let err = env.fails_in(&other, &["pull", "--platform", "linux/mips64le", &dest]);
    assert!(
        err.contains("no matching manifest for linux/mips64le in the manifest list entries"),
        "{err}"
    );
    let err = env.fails_in(&other, &["pull", "--platform", "linux", &dest]);
    assert!(err.contains("invalid platform"), "{err}");
    // A single-platform image must match a platform asked for.
    env.ok(&["push", "ours:1", &format!("{}/single/app:1", reg.host())]);
    let single = format!("{}/single/app:1", reg.host());
    env.ok_in(
        &other,
        &["pull", "--platform", &format!("linux/{host_arch}"), &single],
    );
    let err = env.fails_in(
        &other,
        &[
            "pull",
            "--platform",
            &format!("linux/{other_arch}"),
            &single,
        ],
    );
    assert!(
        err.contains(&format!("its platform (linux/{host_arch}) does not match the specified platform (linux/{other_arch})")),
        "{err}"
    );
}

fn sha256_bytes(bytes: &[u8]) -> String {
    forge_oci::Digest::sha256_of(bytes).hex().to_string()
}

#[test]
fn a_terminal_gets_layer_lines_redrawn_in_place() {
    let env = Env::new("reg-tty");
    let reg = Registry::start(&env.dir.join("registry"), &RegistryOptions::default());
    import_busybox(&env.root, "app:1");
    let dest = format!("{}/tty/app:1", reg.host());
    env.ok(&["push", "app:1", &dest]);
    let fresh = env.dir.join("fresh");
    // `script` gives forge a pseudo-terminal as stdout.
    let forge_cmd = format!(
        "{} --root {} pull {dest}",
        env!("CARGO_BIN_EXE_forge"),
        p(&fresh)
    );
    let mut c = Command::new("script");
    c.args(["-qec", &forge_cmd, "/dev/null"])
        .env("FORGE_CONFIG", &env.config)
        .env_remove("DOCKER_CONFIG");
    let out = sh(&mut c);
    let layer = layer_hex(&env.root, "app:1");
    // Lines are rewritten with cursor-up and erase-line sequences, ending complete.
    assert!(out.contains("\x1b[1A\x1b[2K"), "{out:?}");
    assert!(
        out.contains(&format!("\x1b[2K{}: Pull complete", &layer[..12])),
        "{out:?}"
    );
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {dest}")),
        "{out:?}"
    );
}
