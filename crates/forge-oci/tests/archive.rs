//! Archive reading and writing without peers: the layouts docker has written over the
//! years (classic with shared-layer symlinks, compressed layers, docker ≥ 25's OCI hybrid),
//! corrupt and incomplete archives, and determinism of what we write.

mod common;

use std::collections::HashMap;
use std::fs;

use common::scratch;
use forge_oci::archive::{self, ArchiveError, ArchiveFormat, ExportImage, WriteOptions};
use forge_oci::image::{build_manifest, descriptor, descriptor_digest, to_json, Descriptor};
use forge_oci::layer::{write_layer, Compression, LayerInfo, LayerOptions};
use forge_oci::{media_types, BlobSinkError, Digest, ImageConfig, MemoryBlobs, RootFs};
use tar::{EntryType, Header};

/// A layer of one file `name` holding `data`.
fn layer(name: &str, data: &[u8], c: Compression) -> (Vec<u8>, LayerInfo) {
    let t = scratch("arch-layer");
    fs::write(t.path().join(name), data).expect("write");
    let o = LayerOptions {
        compression: c,
        ..LayerOptions::default()
    };
    write_layer(t.path(), &o, Vec::new()).expect("layer")
}

fn config_for(diff_ids: Vec<Digest>) -> Vec<u8> {
    let c = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        rootfs: RootFs {
            diff_ids,
            ..RootFs::default()
        },
        ..ImageConfig::default()
    };
    c.to_json().expect("config json")
}

/// A tar from (name, type, data, link).
struct TarBuild(tar::Builder<Vec<u8>>);

impl TarBuild {
    fn new() -> Self {
        TarBuild(tar::Builder::new(Vec::new()))
    }
    fn file(mut self, name: &str, data: &[u8]) -> Self {
        let mut h = Header::new_ustar();
        h.set_path(name).expect("path");
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(EntryType::Regular);
        h.set_cksum();
        self.0.append(&h, data).expect("append");
        self
    }
    fn symlink(mut self, name: &str, target: &str) -> Self {
        let mut h = Header::new_ustar();
        h.set_path(name).expect("path");
        h.set_link_name(target).expect("link");
        h.set_size(0);
        h.set_mode(0o777);
        h.set_entry_type(EntryType::Symlink);
        h.set_cksum();
        self.0.append(&h, &b""[..]).expect("append");
        self
    }
    fn done(self) -> Vec<u8> {
        self.0.into_inner().expect("finish")
    }
}

#[test]
fn classic_docker_save_with_shared_layer_symlink_and_compressed_layer() {
    let (base, base_info) = layer("base", b"base layer", Compression::None);
    // > 4 MiB of incompressible data, so the gzip layer streams to the sink and its diffID
    // is computed while streaming.
    let (big, big_info) = layer("big", &common::pseudo_random(5 << 20), Compression::Gzip);
    assert!(big.len() > 4 << 20);
    let cfg1 = config_for(vec![base_info.diff_id.clone()]);
    let cfg2 = config_for(vec![base_info.diff_id.clone(), big_info.diff_id.clone()]);
    let (c1, c2) = (Digest::sha256_of(&cfg1), Digest::sha256_of(&cfg2));
    let manifest = format!(
        r#"[{{"Config":"{h1}.json","RepoTags":["one:latest"],"Layers":["aaaa/layer.tar"]}},{{"Config":"{h2}.json","RepoTags":["two:latest","example.com/two:1"],"Layers":["bbbb/layer.tar","cccc/layer.tar"]}}]"#,
        h1 = c1.hex(),
        h2 = c2.hex()
    );
    let tar = TarBuild::new()
        .file("aaaa/VERSION", b"1.0")
        .file("aaaa/json", b"{}")
        .file("aaaa/layer.tar", &base)
        .file("bbbb/VERSION", b"1.0")
        .symlink("bbbb/layer.tar", "../aaaa/layer.tar")
        .file("cccc/layer.tar", &big)
        .file(&format!("{}.json", c1.hex()), &cfg1)
        .file(&format!("{}.json", c2.hex()), &cfg2)
        .file("repositories", br#"{"one":{"latest":"aaaa"}}"#)
        .file("manifest.json", manifest.as_bytes())
        .done();
    let mut mem = MemoryBlobs::new();
    let loaded = archive::read_archive(&tar[..], &mut mem).expect("read");
    assert_eq!(loaded.format, ArchiveFormat::DockerArchive);
    assert_eq!(loaded.images.len(), 2);
    let two = &loaded.images[1];
    assert_eq!(two.names, vec!["two:latest", "example.com/two:1"]);
    assert_eq!(descriptor_digest(&two.config).expect("d"), c2);
    assert_eq!(
        descriptor_digest(&two.layers[0]).expect("d"),
        base_info.diff_id
    );
    assert_eq!(
        descriptor_digest(&two.layers[1]).expect("d"),
        big_info.digest,
        "kept compressed"
    );
    assert_eq!(
        two.layers[1].media_type().to_string(),
        media_types::DOCKER_LAYER_GZIP
    );
    assert_eq!(
        two.layers[0].media_type().to_string(),
        media_types::DOCKER_LAYER_TAR
    );
    // The generated manifest is in the sink and names the same blobs.
    let md = descriptor_digest(&two.manifest).expect("d");
    let m: forge_oci::image::ImageManifest =
        serde_json::from_slice(mem.get(&md).expect("manifest in sink")).expect("parse");
    assert_eq!(m.layers(), &two.layers);
    // Junk (VERSION, json, repositories) did not go to the sink: manifests, configs, layers.
    assert_eq!(mem.blobs.len(), 2 + 2 + 2);

    // gzip'ed archive: same result.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).expect("gz");
    let gz = gz.finish().expect("gz");
    let again = archive::read_archive(&gz[..], &mut MemoryBlobs::new()).expect("read gz");
    assert_eq!(again.compression, Compression::Gzip);
    assert_eq!(again.images[1].layers, two.layers);
}

#[test]
fn docker_25_hybrid_keeps_original_manifest_and_names() {
    let (l, info) = layer("f", b"content", Compression::None);
    let cfg = config_for(vec![info.diff_id.clone()]);
    let cd = Digest::sha256_of(&cfg);
    let cfg_desc = descriptor(media_types::OCI_CONFIG, &cd, cfg.len() as u64);
    let m = build_manifest(cfg_desc, vec![info.descriptor()], None, false);
    let mbytes = to_json(&m).expect("json");
    let md = Digest::sha256_of(&mbytes);
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{md}","size":{},"annotations":{{"io.containerd.image.name":"docker.io/library/hy:latest","org.opencontainers.image.ref.name":"latest"}}}}]}}"#,
        mbytes.len()
    );
    let manifest_json = format!(
        r#"[{{"Config":"blobs/sha256/{}","RepoTags":["hy:latest"],"Layers":["blobs/sha256/{}"]}}]"#,
        cd.hex(),
        info.digest.hex()
    );
    let tar = TarBuild::new()
        .file(&format!("blobs/sha256/{}", info.digest.hex()), &l)
        .file(&format!("blobs/sha256/{}", cd.hex()), &cfg)
        .file(&format!("blobs/sha256/{}", md.hex()), &mbytes)
        .file("index.json", index.as_bytes())
        .file("manifest.json", manifest_json.as_bytes())
        .file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
        .done();
    let mut mem = MemoryBlobs::new();
    let loaded = archive::read_archive(&tar[..], &mut mem).expect("read");
    assert_eq!(loaded.format, ArchiveFormat::DockerArchive);
    let img = &loaded.images[0];
    assert_eq!(
        descriptor_digest(&img.manifest).expect("d"),
        md,
        "original manifest kept"
    );
    assert_eq!(img.names, vec!["docker.io/library/hy:latest", "hy:latest"]);
    assert_eq!(mem.blobs.len(), 3);
}

#[test]
fn corrupt_blob_is_refused_and_not_stored() {
    let (l, info) = layer("f", b"content", Compression::Gzip);
    let mut bad = l.clone();
    let last = bad.len() - 10;
    bad[last] ^= 0xff;
    let tar = TarBuild::new()
        .file(&format!("blobs/sha256/{}", info.digest.hex()), &bad)
        .file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
        .file("index.json", br#"{"schemaVersion":2,"manifests":[]}"#)
        .done();
    let mut mem = MemoryBlobs::new();
    let err = archive::read_archive(&tar[..], &mut mem).expect_err("corrupt");
    assert!(
        matches!(&err, ArchiveError::Blob { source: BlobSinkError::DigestMismatch { .. }, file } if file.contains(info.digest.hex())),
        "{err}"
    );
    assert!(mem.blobs.is_empty());
}

#[test]
fn missing_and_mismatched_layers_are_errors() {
    let (l, info) = layer("f", b"content", Compression::None);
    let cfg = config_for(vec![info.diff_id.clone()]);
    let cd = Digest::sha256_of(&cfg);
    let manifest = format!(
        r#"[{{"Config":"{}.json","RepoTags":null,"Layers":["x/layer.tar"]}}]"#,
        cd.hex()
    );
    let tar = TarBuild::new()
        .file(&format!("{}.json", cd.hex()), &cfg)
        .file("manifest.json", manifest.as_bytes())
        .done();
    let err = archive::read_archive(&tar[..], &mut MemoryBlobs::new()).expect_err("missing");
    assert!(
        matches!(&err, ArchiveError::Missing { file, .. } if file == "x/layer.tar"),
        "{err}"
    );

    // The layer is there but is not the one the config names.
    let (other, _) = layer("g", b"other", Compression::None);
    let tar = TarBuild::new()
        .file("x/layer.tar", &other)
        .file(&format!("{}.json", cd.hex()), &cfg)
        .file("manifest.json", manifest.as_bytes())
        .done();
    let err = archive::read_archive(&tar[..], &mut MemoryBlobs::new()).expect_err("mismatch");
    assert!(
        matches!(&err, ArchiveError::DiffIdMismatch { expected, .. } if *expected == info.diff_id),
        "{err}"
    );
    let _ = l;

    // An OCI index naming a manifest that is not there.
    let tar = TarBuild::new()
        .file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
        .file(
            "index.json",
            format!(
                r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":3}}]}}"#,
                Digest::sha256_of(b"nope")
            )
            .as_bytes(),
        )
        .done();
    let err =
        archive::read_archive(&tar[..], &mut MemoryBlobs::new()).expect_err("missing manifest");
    assert!(matches!(err, ArchiveError::Missing { .. }), "{err}");
}

#[test]
fn not_an_image_archive() {
    let tar = TarBuild::new().file("hello.txt", b"hi").done();
    let err = archive::read_archive(&tar[..], &mut MemoryBlobs::new()).expect_err("not an image");
    assert!(matches!(err, ArchiveError::NotAnImageArchive), "{err}");
    let t = scratch("detect");
    let p = t.path().join("x.tar");
    fs::write(&p, &tar).expect("write");
    assert!(matches!(
        archive::detect(&p),
        Err(ArchiveError::NotAnImageArchive)
    ));
}

/// An image in memory: gzip layer, config, OCI manifest.
fn mem_image(mem: &mut MemoryBlobs, data: &[u8]) -> (Descriptor, LayerInfo, Digest) {
    let (l, info) = layer("f", data, Compression::Gzip);
    mem.insert(l);
    let cfg = config_for(vec![info.diff_id.clone()]);
    let c = mem.insert(cfg);
    let m = build_manifest(
        descriptor(media_types::OCI_CONFIG, &c.digest, c.size),
        vec![info.descriptor()],
        None,
        false,
    );
    let mi = mem.insert(to_json(&m).expect("json"));
    (
        descriptor(media_types::OCI_MANIFEST, &mi.digest, mi.size),
        info,
        c.digest,
    )
}

#[test]
fn written_archives_are_deterministic_and_read_back() {
    let mut mem = MemoryBlobs::new();
    let (m1, i1, c1) = mem_image(&mut mem, b"one");
    let (m2, _, _) = mem_image(&mut mem, b"two");
    let images = vec![
        ExportImage {
            manifest: m1.clone(),
            names: vec!["a:1".into(), "docker.io/library/a:2".into()],
        },
        ExportImage {
            manifest: m2,
            names: vec![],
        },
    ];
    let o = WriteOptions::default();
    let x = archive::write_oci_archive(Vec::new(), &images, &mem, &o).expect("write");
    let y = archive::write_oci_archive(Vec::new(), &images, &mem, &o).expect("write");
    assert_eq!(x, y);
    let dx = archive::write_docker_archive(Vec::new(), &images, &mem, &o).expect("write");
    let dy = archive::write_docker_archive(Vec::new(), &images, &mem, &o).expect("write");
    assert_eq!(dx, dy);

    let loaded = archive::read_archive(&x[..], &mut MemoryBlobs::new()).expect("read oci");
    assert_eq!(loaded.images.len(), 2);
    assert_eq!(loaded.images[0].names, vec!["a:1", "docker.io/library/a:2"]);
    assert_eq!(loaded.images[0].manifest.digest(), m1.digest());

    let loaded = archive::read_archive(&dx[..], &mut MemoryBlobs::new()).expect("read docker");
    let img = &loaded.images[0];
    // RepoTags in docker's familiar form.
    assert_eq!(img.names, vec!["a:1", "a:2"]);
    assert_eq!(descriptor_digest(&img.config).expect("d"), c1);
    assert_eq!(
        descriptor_digest(&img.layers[0]).expect("d"),
        i1.diff_id,
        "decompressed on export"
    );

    // An unpacked docker save directory reads the same.
    let u = scratch("docker-dir");
    tar::Archive::new(&dx[..]).unpack(u.path()).expect("unpack");
    assert_eq!(
        archive::detect(u.path()).expect("detect").format,
        ArchiveFormat::DockerDir
    );
    let from_dir = archive::read_archive_path(u.path(), &mut MemoryBlobs::new()).expect("dir");
    assert_eq!(from_dir.format, ArchiveFormat::DockerDir);
    assert_eq!(from_dir.images[0].layers, img.layers);

    // A layout directory, then read back through detection.
    let t = scratch("layout-out");
    let dir = t.path().join("l");
    archive::write_oci_layout(&dir, &images, &mem).expect("layout");
    let d = archive::detect(&dir).expect("detect");
    assert_eq!(d.format, ArchiveFormat::OciLayout);
    let mut sink = MemoryBlobs::new();
    let l = archive::read_archive_path(&dir, &mut sink).expect("read layout");
    let by_name: HashMap<_, _> = l
        .images
        .iter()
        .flat_map(|i| {
            i.names
                .iter()
                .map(move |n| (n.clone(), i.manifest.digest().clone()))
        })
        .collect();
    assert_eq!(by_name.get("a:1"), Some(m1.digest()));
    assert_eq!(
        sink.blobs.len(),
        mem.blobs.len(),
        "every blob reached, nothing else"
    );
}

#[test]
fn docker_archive_refuses_an_index_and_reports_corrupt_sources() {
    let mut mem = MemoryBlobs::new();
    let (m, info, _) = mem_image(&mut mem, b"x");
    let idx = descriptor(media_types::OCI_INDEX, &Digest::sha256_of(b"i"), 1);
    let err = archive::write_docker_archive(
        Vec::new(),
        &[ExportImage {
            manifest: idx,
            names: vec![],
        }],
        &mem,
        &WriteOptions::default(),
    )
    .expect_err("index");
    assert!(matches!(err, ArchiveError::NotAManifest { .. }), "{err}");

    // Corrupt the layer in the source: export notices.
    let blob = mem.blobs.get_mut(&info.digest).expect("layer");
    let n = blob.len();
    blob[n - 12] ^= 1;
    let err = archive::write_oci_archive(
        Vec::new(),
        &[ExportImage {
            manifest: m,
            names: vec![],
        }],
        &mem,
        &WriteOptions::default(),
    )
    .expect_err("corrupt");
    assert!(matches!(err, ArchiveError::Corrupt { .. }), "{err}");
}
