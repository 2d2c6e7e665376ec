//! Crash safety and concurrency: `forge load` killed with SIGKILL at many points of a
//! ~100 MB load never leaves a partial blob under `blobs/` or an image naming missing
//! blobs; the store keeps working, the same load then succeeds, and `forge image prune`
//! clears what the killed runs left in `tmp/`. Two loads into one store at once both
//! succeed, and garbage collection waits for a load in progress instead of racing it.

mod support;

use std::path::Path;
use std::process::{Child, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::*;

fn spawn_load(root: &Path, archive: &Path) -> Child {
    forge(root)
        .args(["load", "-q", "-i"])
        .arg(archive)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn forge load")
}

/// The store is consistent: every blob hashes to its name, `forge images` works without
/// warnings (no image names a missing or corrupt blob).
fn assert_consistent(root: &Path) {
    assert_blobs_intact(root);
    let r = run(root, &["images"]);
    assert!(r.ok, "forge images after a kill: {}", r.stderr);
    assert!(r.stderr.is_empty(), "no broken image: {}", r.stderr);
    for name in list(&root.join("snapshots")) {
        assert!(
            root.join("snapshots")
                .join(&name)
                .join("meta.json")
                .is_file(),
            "snapshot {name} is complete"
        );
    }
}

#[test]
fn sigkill_during_load_leaves_a_working_store() {
    let archive = big_archive();
    let tmp = scratch("crash");

    // How long an uninterrupted load takes.
    let probe = tmp.path().join("probe");
    let start = Instant::now();
    let out = ok(&probe, &["load", "-i", archive.to_str().expect("p")]);
    let full = start.elapsed();
    assert_eq!(out, "Loaded image: big:1\n");
    let id = ok(&probe, &["images", "-q", "--no-trunc"]);

    let points = 20u32;
    let mut killed_mid_way = 0;
    for i in 1..=points {
        let root = tmp.path().join(format!("s{i:02}"));
        // Spread over the whole load, from just after start to just before the end.
        let at = full.mul_f64(f64::from(i) / f64::from(points + 1));
        let mut child = spawn_load(&root, &archive);
        sleep(at);
        if child.try_wait().expect("try_wait").is_none() {
            kill(
                Pid::from_raw(i32::try_from(child.id()).expect("pid")),
                Signal::SIGKILL,
            )
            .expect("kill");
            killed_mid_way += 1;
        }
        let status = child.wait().expect("wait");
        let _ = status;
        assert_consistent(&root);
        // The same load now succeeds, with the same image.
        let out = ok(&root, &["load", "-i", archive.to_str().expect("p")]);
        assert_eq!(out, "Loaded image: big:1\n", "load after kill at {at:?}");
        assert_eq!(ok(&root, &["images", "-q", "--no-trunc"]), id);
        assert_consistent(&root);
        // prune collects the killed run's leftovers.
        ok(&root, &["image", "prune", "-f"]);
        assert!(list(&root.join("tmp")).is_empty(), "prune clears tmp/");
        assert_eq!(ok(&root, &["images", "-q", "--no-trunc"]), id, "image kept");
        assert_blobs_intact(&root);
        std::fs::remove_dir_all(&root).expect("rm store");
    }
    assert!(
        killed_mid_way >= points / 2,
        "most kills landed during the load ({killed_mid_way} of {points}, load takes {full:?})"
    );
}

#[test]
fn two_loads_into_one_store_at_once() {
    let tmp = scratch("concurrent");
    let maker = tmp.path().join("maker");
    import_busybox(&maker, "one:1");
    let one = tmp.path().join("one.tar");
    ok(&maker, &["save", "-o", one.to_str().expect("p"), "one:1"]);
    let big = big_archive();

    let root = tmp.path().join("store");
    for round in 0..3 {
        let a = spawn_load(&root, &big);
        let b = spawn_load(&root, &one);
        // And the same archive twice at once.
        let c = spawn_load(&root, &one);
        for (name, child) in [("big", a), ("one", b), ("one again", c)] {
            let out = child.wait_with_output().expect("wait");
            assert!(
                out.status.success(),
                "round {round}: load {name} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let images = ok(&root, &["images"]);
        assert!(
            images.contains("big ") && images.contains("one "),
            "{images}"
        );
        assert_consistent(&root);
        if round == 1 {
            // Start from an empty store once more.
            ok(&root, &["image", "prune", "-a", "-f"]);
        }
    }
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("index.json")).expect("index"))
            .expect("json");
    assert_eq!(
        index["manifests"].as_array().expect("manifests").len(),
        2,
        "{index}"
    );
}

/// `image prune -a` started while a load runs waits for it (the load holds the store's
/// lease), so the load completes intact; the prune then removes what it finds.
#[test]
fn gc_waits_for_a_load_in_progress() {
    let tmp = scratch("gc-vs-load");
    let root = tmp.path().join("store");
    let big = big_archive();
    ok(&root, &["images"]);
    let load = spawn_load(&root, &big);
    // Let the load take its lease.
    sleep(Duration::from_millis(200));
    let prune = forge(&root)
        .args(["image", "prune", "-f"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn prune");
    let lout = load.wait_with_output().expect("wait load");
    assert!(
        lout.status.success(),
        "{}",
        String::from_utf8_lossy(&lout.stderr)
    );
    let pout = prune.wait_with_output().expect("wait prune");
    assert!(pout.status.success());
    assert_consistent(&root);
    assert!(ok(&root, &["images"]).contains("big "));
    // The image is whole: it saves and reloads.
    let again = tmp.path().join("again.tar");
    ok(
        &root,
        &[
            "save",
            "--format",
            "oci-archive",
            "-o",
            again.to_str().expect("p"),
            "big:1",
        ],
    );
    let other = tmp.path().join("other");
    ok(&other, &["load", "-i", again.to_str().expect("p")]);
}
