//! Real peers read what forge writes, and forge reads what they write: skopeo inspects the
//! store itself and forge's archives, umoci unpacks forge's images to exactly the rootfs
//! that was imported, and archives written by `skopeo copy` load into forge and save back
//! with the same layer digests. Runs as root (CI does): the test tree has device nodes,
//! foreign owners and `security.capability`.

mod support;

#[path = "../../forge-oci/tests/common/mod.rs"]
mod oci_common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::*;

fn skopeo_inspect(what: &str, raw: bool) -> Value {
    let mut c = Command::new("skopeo");
    c.arg("inspect");
    if raw {
        c.arg("--raw");
    }
    let out = sh(c.arg(what));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("skopeo inspect {what}: {e}\n{out}"))
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[test]
fn skopeo_reads_the_store_and_forge_archives() {
    let tmp = scratch("peer-skopeo");
    let root = tmp.path().join("store");
    let id = import_busybox(&root, "app:1.0");
    ok(&root, &["tag", "app:1.0", "localhost:5000/team/app:v2"]);
    let manifest = manifest_digest(&root, "app:1.0");

    // The store is an OCI layout skopeo reads by familiar name.
    for name in ["app:1.0", "localhost:5000/team/app:v2"] {
        let v = skopeo_inspect(&format!("oci:{}:{name}", p(&root)), false);
        assert_eq!(v["Digest"], manifest.as_str(), "{name}");
        assert_eq!(v["Layers"].as_array().expect("layers").len(), 1);
        let raw = skopeo_inspect(&format!("oci:{}:{name}", p(&root)), true);
        assert_eq!(raw["config"]["digest"], id.as_str());
    }

    let oci = tmp.path().join("app-oci.tar");
    let docker = tmp.path().join("app-docker.tar");
    ok(
        &root,
        &["save", "--format", "oci-archive", "-o", p(&oci), "app:1.0"],
    );
    ok(&root, &["save", "-o", p(&docker), "app:1.0"]);
    let v = skopeo_inspect(&format!("oci-archive:{}:app:1.0", p(&oci)), false);
    assert_eq!(v["Digest"], manifest.as_str());
    let v = skopeo_inspect(&format!("docker-archive:{}", p(&docker)), false);
    assert_eq!(
        v["RepoTags"],
        serde_json::json!([]),
        "skopeo lists no registry tags"
    );
    let raw = skopeo_inspect(&format!("docker-archive:{}", p(&docker)), true);
    assert_eq!(
        raw["config"]["digest"],
        id.as_str(),
        "same image id in docker-archive"
    );
    // skopeo can also convert them, proving every blob verifies.
    let copy = tmp.path().join("copy");
    sh(Command::new("skopeo").args([
        "copy",
        &format!("docker-archive:{}", p(&docker)),
        &format!("oci:{}:x", p(&copy)),
    ]));
}

/// `umoci unpack` of forge's image gives exactly the imported tree: paths, types, modes,
/// owners, symlink targets, hardlinks, device numbers, xattrs and mtimes.
#[test]
fn umoci_unpacks_exactly_the_imported_rootfs() {
    let tmp = scratch("peer-umoci");
    let root = tmp.path().join("store");
    let tree = tmp.path().join("tree");
    std::fs::create_dir(&tree).expect("mkdir");
    oci_common::build_tree(&tree);
    let tar = tmp.path().join("tree.tar.gz");
    tar_dir(&tree, &tar, Some("gzip"));
    ok(&root, &["import", p(&tar), "tree:1"]);

    let bundle = tmp.path().join("bundle");
    sh(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:tree:1", p(&root)))
        .arg(&bundle));
    oci_common::assert_same_tree(&tree, &bundle.join("rootfs"), true);

    // And from an OCI layout forge saves.
    let layout = tmp.path().join("layout");
    ok(
        &root,
        &["save", "--format", "oci-dir", "-o", p(&layout), "tree:1"],
    );
    let bundle2 = tmp.path().join("bundle2");
    sh(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:tree:1", p(&layout)))
        .arg(&bundle2));
    oci_common::assert_same_tree(&tree, &bundle2.join("rootfs"), true);

    // forge's own snapshot of the layer holds the same tree.
    let v = inspect(&root, "tree:1");
    let lower = v["GraphDriver"]["Data"]["LowerDir"]
        .as_str()
        .expect("snapshot path");
    oci_common::assert_same_tree(&tree, Path::new(lower), true);
}

/// Archives written by `skopeo copy` load into forge and save back in the same format
/// with the same layer digests and image id.
#[test]
fn skopeo_archives_load_and_save_back_unchanged() {
    let tmp = scratch("peer-roundtrip");
    let src = tmp.path().join("src");
    import_busybox(&src, "bb:1");
    let sk_oci = tmp.path().join("sk-oci.tar");
    let sk_docker = tmp.path().join("sk-docker.tar");
    let from = format!("oci:{}:bb:1", p(&src));
    sh(Command::new("skopeo").args(["copy", &from, &format!("oci-archive:{}:bb:1", p(&sk_oci))]));
    sh(Command::new("skopeo").args([
        "copy",
        &from,
        &format!("docker-archive:{}:bb:1", p(&sk_docker)),
    ]));

    for (archive, format, transport) in [
        (&sk_oci, "oci-archive", "oci-archive"),
        (&sk_docker, "docker-archive", "docker-archive"),
    ] {
        let store = tmp.path().join(format!("store-{format}"));
        let out = ok(&store, &["load", "-i", p(archive)]);
        assert!(out.contains("Loaded image: bb:1"), "{out}");
        let back = tmp.path().join(format!("back-{format}.tar"));
        ok(
            &store,
            &["save", "--format", format, "-o", p(&back), "bb:1"],
        );
        let suffix = if format == "oci-archive" { ":bb:1" } else { "" };
        let a = skopeo_inspect(&format!("{transport}:{}{suffix}", p(archive)), false);
        let b = skopeo_inspect(&format!("{transport}:{}{suffix}", p(&back)), false);
        assert_eq!(a["Layers"], b["Layers"], "{format}: same layer digests");
        let ra = skopeo_inspect(&format!("{transport}:{}{suffix}", p(archive)), true);
        let rb = skopeo_inspect(&format!("{transport}:{}{suffix}", p(&back)), true);
        assert_eq!(
            ra["config"]["digest"], rb["config"]["digest"],
            "{format}: same image id"
        );
        if format == "oci-archive" {
            // OCI keeps the manifest byte for byte.
            assert_eq!(a["Digest"], b["Digest"], "same manifest digest");
        }
        assert_blobs_intact(&store);
    }
}
