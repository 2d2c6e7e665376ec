//! Real peers read what we write and we read what they write: umoci unpacks our layout and
//! the rootfs matches the source tree; skopeo inspects and converts our layouts and
//! archives; we read skopeo's archives with digests preserved byte for byte.

mod common;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{assert_same_tree, build_tree, scratch};
use forge_oci::archive::{self, ArchiveFormat, ExportImage};
use forge_oci::image::{build_manifest, descriptor_digest, rfc3339_utc, Descriptor};
use forge_oci::layer::{apply_layer, write_layer, ApplyOptions, LayerInfo, LayerOptions};
use forge_oci::{
    media_types, BlobSink, ContainerConfig, Digest, History, ImageConfig, OciLayout, RootFs,
};

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Built {
    layout: OciLayout,
    manifest: Descriptor,
    config: Digest,
    layer: LayerInfo,
}

/// Writes `tree` as a one-layer image into a new layout at `dir`, tagged `tag`.
fn build_image(dir: &Path, tree: &Path, tag: &str) -> Built {
    let mut layout = OciLayout::create(dir).expect("create layout");
    // Stream the layer through a temp file into the layout, as a store would.
    let tmp = dir.join("layer.tmp");
    let (_, layer) = write_layer(
        tree,
        &LayerOptions::gzip(),
        File::create(&tmp).expect("create tmp"),
    )
    .expect("write layer");
    layout
        .put(
            &mut File::open(&tmp).expect("open tmp"),
            Some(&layer.digest),
        )
        .expect("put layer");
    fs::remove_file(&tmp).expect("rm tmp");
    let config = ImageConfig {
        created: Some(rfc3339_utc(0)),
        architecture: "amd64".into(),
        os: "linux".into(),
        config: Some(ContainerConfig {
            cmd: Some(vec!["/bin/sh".into()]),
            env: Some(vec!["PATH=/bin".into()]),
            shell: Some(vec!["/bin/sh".into(), "-c".into()]),
            ..ContainerConfig::default()
        }),
        rootfs: RootFs {
            diff_ids: vec![layer.diff_id.clone()],
            ..RootFs::default()
        },
        history: Some(vec![History {
            created: Some(rfc3339_utc(0)),
            created_by: Some("forge test".into()),
            ..History::default()
        }]),
        ..ImageConfig::default()
    };
    let cfg = layout
        .put_json(media_types::OCI_CONFIG, &config)
        .expect("config");
    let config_digest = descriptor_digest(&cfg).expect("digest");
    let m = build_manifest(cfg, vec![layer.descriptor()], None, false);
    let manifest = layout
        .put_json(media_types::OCI_MANIFEST, &m)
        .expect("manifest");
    layout.tag(tag, &manifest).expect("tag");
    Built {
        layout,
        manifest,
        config: config_digest,
        layer,
    }
}

#[test]
fn umoci_unpacks_our_layer_exactly() {
    let t = scratch("umoci");
    let tree = t.path().join("tree");
    fs::create_dir(&tree).expect("mkdir");
    build_tree(&tree);
    let dir = t.path().join("layout");
    build_image(&dir, &tree, "test");
    let bundle = t.path().join("bundle");
    run(Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:test", dir.display()))
        .arg(&bundle));
    assert_same_tree(&tree, &bundle.join("rootfs"), true);
    let out = run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:test", dir.display())));
    assert!(out.contains("\"Layers\""), "{out}");
}

/// One layer of the busybox rootfs, through skopeo, back through our reader and applier.
#[test]
fn busybox_rootfs_survives_skopeo_docker_archive() {
    let t = scratch("busybox");
    let rootfs = t.path().join("rootfs");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/busybox-rootfs.sh");
    run(Command::new("sh").arg(&script).arg(&rootfs));
    let dir = t.path().join("layout");
    let built = build_image(&dir, &rootfs, "bb");
    let da = t.path().join("bb-docker.tar");
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}:bb", dir.display()))
        .arg(format!("docker-archive:{}:busybox:1", da.display())));
    let mut store = OciLayout::create(&t.path().join("store")).expect("store");
    let loaded = archive::read_archive_path(&da, &mut store).expect("read docker-archive");
    assert_eq!(loaded.format, ArchiveFormat::DockerArchive);
    let img = &loaded.images[0];
    // skopeo writes RepoTags in full form; names are returned as written.
    assert_eq!(img.names, vec!["docker.io/library/busybox:1".to_string()]);
    assert_eq!(
        descriptor_digest(&img.config).expect("d"),
        built.config,
        "image id kept"
    );
    assert_eq!(
        descriptor_digest(&img.layers[0]).expect("d"),
        built.layer.diff_id,
        "docker-archive layers are the uncompressed tar, byte for byte"
    );
    let out = t.path().join("out");
    fs::create_dir(&out).expect("mkdir");
    let layer = descriptor_digest(&img.layers[0]).expect("d");
    let (r, _) = store.open_blob(&layer).expect("open");
    apply_layer(r, &out, &ApplyOptions::default()).expect("apply");
    assert_same_tree(&rootfs, &out, true);
}

#[test]
fn skopeo_reads_our_archives() {
    let t = scratch("ours");
    let tree = t.path().join("tree");
    fs::create_dir(&tree).expect("mkdir");
    build_tree(&tree);
    let built = build_image(&t.path().join("layout"), &tree, "test");
    let images = [ExportImage {
        manifest: built.manifest.clone(),
        names: vec!["example.com/app:1.0".into()],
    }];

    let oa = t.path().join("app-oci.tar");
    archive::write_oci_archive(
        File::create(&oa).expect("create"),
        &images,
        &built.layout,
        &archive::WriteOptions::default(),
    )
    .expect("write oci-archive");
    let out = run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci-archive:{}:example.com/app:1.0", oa.display())));
    assert!(out.contains(built.layer.digest.as_str()), "{out}");

    let da = t.path().join("app-docker.tar");
    archive::write_docker_archive(
        File::create(&da).expect("create"),
        &images,
        &built.layout,
        &archive::WriteOptions::default(),
    )
    .expect("write docker-archive");
    let out = run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("docker-archive:{}", da.display())));
    assert!(out.contains(built.layer.diff_id.as_str()), "{out}");
    // Selecting the image by its RepoTag works only if manifest.json carries it.
    run(Command::new("skopeo").arg("inspect").arg(format!(
        "docker-archive:{}:example.com/app:1.0",
        da.display()
    )));

    // skopeo can also copy out of our docker-archive into a layout umoci can unpack.
    let back = t.path().join("back");
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("docker-archive:{}", da.display()))
        .arg(format!("oci:{}:x", back.display())));
    let bundle = t.path().join("bundle");
    run(Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:x", back.display()))
        .arg(&bundle));
    assert_same_tree(&tree, &bundle.join("rootfs"), true);

    // And our own reader reads both back.
    for (path, format) in [
        (&oa, ArchiveFormat::OciArchive),
        (&da, ArchiveFormat::DockerArchive),
    ] {
        let detected = archive::detect(path).expect("detect");
        assert_eq!(detected.format, format);
        let mut mem = forge_oci::MemoryBlobs::new();
        let loaded = archive::read_archive_path(path, &mut mem).expect("read");
        assert_eq!(loaded.images.len(), 1);
        assert_eq!(
            descriptor_digest(&loaded.images[0].config).expect("d"),
            built.config
        );
    }
}

#[test]
fn we_read_skopeo_archives_with_digests_preserved() {
    let t = scratch("theirs");
    let tree = t.path().join("tree");
    fs::create_dir(&tree).expect("mkdir");
    build_tree(&tree);
    let dir = t.path().join("layout");
    let built = build_image(&dir, &tree, "test");

    let oa: PathBuf = t.path().join("skopeo-oci.tar");
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}:test", dir.display()))
        .arg(format!("oci-archive:{}:app:2", oa.display())));
    let mut store = OciLayout::create(&t.path().join("store")).expect("store");
    let loaded = archive::read_archive_path(&oa, &mut store).expect("read oci-archive");
    assert_eq!(loaded.format, ArchiveFormat::OciArchive);
    let img = &loaded.images[0];
    assert_eq!(img.names, vec!["app:2".to_string()]);
    assert_eq!(
        descriptor_digest(&img.layers[0]).expect("d"),
        built.layer.digest,
        "oci-archive keeps the compressed blob byte for byte"
    );
    assert_eq!(descriptor_digest(&img.config).expect("d"), built.config);
    assert_eq!(
        img.manifest.digest(),
        built.manifest.digest(),
        "manifest kept"
    );
    assert!(store.has_blob(&built.layer.digest));

    let da = t.path().join("skopeo-docker.tar");
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}:test", dir.display()))
        .arg(format!("docker-archive:{}:app:3", da.display())));
    let loaded = archive::read_archive_path(&da, &mut store).expect("read docker-archive");
    let img = &loaded.images[0];
    assert_eq!(img.names, vec!["docker.io/library/app:3".to_string()]);
    assert_eq!(
        descriptor_digest(&img.layers[0]).expect("d"),
        built.layer.diff_id
    );
    assert_eq!(descriptor_digest(&img.config).expect("d"), built.config);
    assert_eq!(
        img.manifest.media_type().to_string(),
        media_types::DOCKER_MANIFEST,
        "docker-archive images get a docker schema 2 manifest"
    );

    // Compressed docker-archive (`docker save | gzip`) is detected by content.
    let gz = t.path().join("skopeo-docker.tar.gz");
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -c {} > {}", da.display(), gz.display()))
        .status()
        .expect("gzip");
    assert!(st.success());
    let d = archive::detect(&gz).expect("detect");
    assert_eq!(d.format, ArchiveFormat::DockerArchive);
    assert_eq!(d.compression, forge_oci::Compression::Gzip);
    let mut mem = forge_oci::MemoryBlobs::new();
    let again = archive::read_archive_path(&gz, &mut mem).expect("read gz");
    assert_eq!(again.images[0].layers, loaded.images[0].layers);

    // An OCI layout directory is detected and read too.
    let d = archive::detect(&dir).expect("detect dir");
    assert_eq!(d.format, ArchiveFormat::OciLayout);
    let mut mem = forge_oci::MemoryBlobs::new();
    let l = archive::read_archive_path(&dir, &mut mem).expect("read layout dir");
    assert_eq!(l.images[0].names, vec!["test".to_string()]);
}
