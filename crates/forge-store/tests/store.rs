//! The store's rules at the library level: staged writes, verified reads, names, lookup,
//! locks and garbage collection.

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

use forge_oci::image::{build_manifest, Descriptor};
use forge_oci::{media_types, Digest, ImageConfig, Reference, RootFs};
use forge_store::{GcRoots, Matched, Store, StoreDir, StoreError};

fn scratch() -> tempfile::TempDir {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("forge-store");
    fs::create_dir_all(&base).expect("base");
    tempfile::tempdir_in(base).expect("tempdir")
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A one-layer image (the layer is arbitrary bytes: nothing here unpacks it).
fn put_image(store: &Store, seed: &str) -> Descriptor {
    let layer = store.put_blob(&mut seed.as_bytes(), None).expect("layer");
    let config = ImageConfig {
        created: Some(forge_oci::image::rfc3339_utc(1_700_000_000)),
        architecture: "amd64".into(),
        os: "linux".into(),
        rootfs: RootFs {
            diff_ids: vec![layer.digest.clone()],
            ..RootFs::default()
        },
        ..ImageConfig::default()
    };
    let cfg = store
        .put_json(media_types::OCI_CONFIG, &config, "config")
        .expect("config");
    let l = forge_oci::image::descriptor(media_types::OCI_LAYER_TAR, &layer.digest, layer.size);
    let m = build_manifest(cfg, vec![l], None, false);
    store
        .put_json(media_types::OCI_MANIFEST, &m, "manifest")
        .expect("manifest")
}

fn r(s: &str) -> Reference {
    Reference::parse(s).expect("reference")
}

#[test]
fn open_creates_an_oci_layout_with_the_store_dirs() {
    let tmp = scratch();
    let store = Store::open(&tmp.path().join("s")).expect("open");
    for d in StoreDir::ALL {
        assert!(store.dir(d).is_dir(), "{}", d.name());
    }
    let layout = fs::read_to_string(store.root().join("oci-layout")).expect("oci-layout");
    assert!(layout.contains("\"imageLayoutVersion\":\"1.0.0\""));
    assert_eq!(store.read_index().expect("index").manifests().len(), 0);
    assert!(store.root().is_absolute());
    // Opening again keeps everything.
    let d = put_image(&store, "a");
    store.add_image(&d, &[r("a:1")]).expect("name");
    let again = Store::open(store.root()).expect("reopen");
    assert_eq!(again.read_index().expect("index").manifests().len(), 1);
}

#[test]
fn blobs_are_staged_verified_and_never_partial() {
    let tmp = scratch();
    let store = Store::open(tmp.path()).expect("open");
    let good = Digest::sha256_of(b"hello");
    // A wrong expected digest: refused, nothing left anywhere.
    let err = store
        .put_blob(&mut &b"hello!"[..], Some(&good))
        .expect_err("mismatch");
    assert!(matches!(
        err,
        StoreError::Blob(forge_oci::BlobSinkError::DigestMismatch { .. })
    ));
    assert!(names(&store.root().join("blobs/sha256")).is_empty());
    assert!(names(&store.dir(StoreDir::Tmp)).is_empty());
    // A producer failing half way: same.
    struct Failing(usize);
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::other("producer died"));
            }
            self.0 -= 1;
            buf[..4].copy_from_slice(b"data");
            Ok(4)
        }
    }
    assert!(store.put_blob(&mut Failing(1000), None).is_err());
    assert!(names(&store.root().join("blobs/sha256")).is_empty());
    assert!(names(&store.dir(StoreDir::Tmp)).is_empty());
    // A writer dropped before commit leaves nothing.
    {
        let mut w = store.blob_writer().expect("writer");
        w.write_all(b"partial").expect("write");
        assert!(w.tmp_path().starts_with(store.dir(StoreDir::Tmp)));
    }
    assert!(names(&store.dir(StoreDir::Tmp)).is_empty());
    // A good blob is there under its name, and reads verify it.
    let info = store
        .put_blob(&mut &b"hello"[..], Some(&good))
        .expect("put");
    assert_eq!(info.digest, good);
    assert_eq!(store.read_blob(&good, "test").expect("read"), b"hello");
    // A corrupt copy offered for a blob we have is refused too.
    assert!(store.put_blob(&mut &b"jello"[..], Some(&good)).is_err());
    fs::write(store.blob_path(&good), b"jello").expect("corrupt");
    assert!(matches!(
        store.read_blob(&good, "test"),
        Err(StoreError::Corrupt { .. })
    ));
    let (mut r, _) = store.open_blob(&good, "test").expect("open");
    assert!(
        io::copy(&mut r, &mut io::sink()).is_err(),
        "streaming read fails at the end"
    );
    assert!(matches!(
        store.read_blob(&Digest::sha256_of(b"nope"), "config"),
        Err(StoreError::MissingBlob { what: "config", .. })
    ));
}

#[test]
fn names_move_and_images_dangle_like_docker() {
    let tmp = scratch();
    let store = Store::open(tmp.path()).expect("open");
    let a = put_image(&store, "a");
    let b = put_image(&store, "b");
    store
        .add_image(&a, &[r("app:1"), r("app:latest")])
        .expect("a");
    // An unnamed image is listed once, unnamed.
    store.add_image(&b, &[]).expect("b");
    store.add_image(&b, &[]).expect("b again");
    let list = store.images().expect("images").images;
    assert_eq!(list.len(), 2);
    assert!(list[1].names.is_empty());
    // Moving app:1 to b: b loses its unnamed entry, a keeps app:latest.
    let moved = store.add_image(&b, &[r("app:1")]).expect("move");
    assert_eq!(moved.len(), 1);
    assert!(!moved[0].previous_dangling);
    // Moving app:latest too: a becomes dangling, still listed.
    let moved = store.add_image(&b, &[r("app:latest")]).expect("move");
    assert!(moved[0].previous_dangling);
    assert_eq!(moved[0].previous.as_str(), a.digest().as_ref());
    let list = store.images().expect("images").images;
    assert_eq!(list.len(), 2);
    let a_img = list
        .iter()
        .find(|i| i.target.digest() == a.digest())
        .expect("a listed");
    assert!(a_img.names.is_empty(), "a is dangling");
    // The index has one entry per (name, manifest), with both annotations.
    let index = fs::read_to_string(store.root().join("index.json")).expect("index");
    assert!(index.contains("\"org.opencontainers.image.ref.name\":\"app:1\""));
    assert!(index.contains("\"io.containerd.image.name\":\"docker.io/library/app:1\""));
    assert_eq!(store.read_index().expect("index").manifests().len(), 3);
    // untag: the last name takes the image out of the index.
    assert_eq!(
        store
            .untag(&r("app:1"))
            .expect("untag")
            .map(|(_, gone)| gone),
        Some(false)
    );
    assert_eq!(
        store
            .untag(&r("app:latest"))
            .expect("untag")
            .map(|(_, gone)| gone),
        Some(true)
    );
    assert!(store.untag(&r("app:latest")).expect("untag").is_none());
}

#[test]
fn lookup_by_name_id_and_prefix() {
    let tmp = scratch();
    let store = Store::open(tmp.path()).expect("open");
    let a = put_image(&store, "a");
    store
        .add_image(&a, &[r("localhost:5000/team/app:v1")])
        .expect("name");
    let img = store
        .resolve("localhost:5000/team/app:v1")
        .expect("by name");
    assert!(matches!(img.matched, Matched::Name(_)));
    let id = img.image.id.clone();
    for s in [
        id.to_string(),
        id.hex().to_string(),
        id.hex()[..12].to_string(),
        format!("sha256:{}", &id.hex()[..5]),
    ] {
        let found = store.resolve(&s).expect(&s);
        assert_eq!(found.image.id, id, "{s}");
        assert_eq!(found.matched, Matched::Id);
    }
    let by_digest = store
        .resolve(&format!("localhost:5000/team/app@{}", a.digest()))
        .expect("by digest");
    assert!(matches!(by_digest.matched, Matched::Digest(_)));
    assert!(matches!(
        store.resolve("app:v1"),
        Err(StoreError::NoSuchImage(_))
    ));
    // Two images whose ids share a first hex digit make that prefix ambiguous.
    let mut ids = vec![id.clone()];
    for i in 0..40 {
        let d = put_image(&store, &format!("img{i}"));
        store.add_image(&d, &[]).expect("add");
        ids.push(store.image_for(&d).expect("image").id);
    }
    let first = &ids[0].hex()[..1];
    if ids.iter().filter(|i| &i.hex()[..1] == first).count() > 1 {
        assert!(matches!(
            store.resolve(first),
            Err(StoreError::AmbiguousId { .. })
        ));
    }
}

#[test]
fn gc_keeps_what_is_reachable_and_sweeps_the_rest() {
    let tmp = scratch();
    let store = Store::open(tmp.path()).expect("open");
    let a = put_image(&store, "kept");
    store.add_image(&a, &[r("kept:1")]).expect("name");
    let b = put_image(&store, "dropped");
    store.add_image(&b, &[r("dropped:1")]).expect("name");
    let extra = store.put_blob(&mut &b"rooted"[..], None).expect("extra");
    let orphan = store.put_blob(&mut &b"orphan"[..], None).expect("orphan");
    store
        .remove_image(&Digest::from_oci(b.digest()).expect("d"))
        .expect("rm");
    // Leftovers of a killed writer.
    fs::write(store.dir(StoreDir::Tmp).join("blob-1-2-3"), b"half").expect("tmp");
    fs::create_dir(store.dir(StoreDir::Tmp).join("snapshot-1-2-3")).expect("tmp dir");
    fs::create_dir_all(
        store
            .dir(StoreDir::Snapshots)
            .join("0".repeat(64))
            .join("fs"),
    )
    .expect("orphan snapshot");
    let mut roots = GcRoots::default();
    roots.blobs.insert(extra.digest.clone());

    // While a lease is held, try_gc does nothing.
    {
        let _lease = store.lease().expect("lease");
        assert!(store.try_gc(&roots).expect("try").is_none());
    }
    let report = store.gc(&roots).expect("gc");
    assert_eq!(report.tmp_removed, 2);
    assert_eq!(report.snapshots_removed, 1);
    // dropped's manifest, config and layer, plus the orphan.
    assert_eq!(report.blobs_removed, 4);
    assert!(report.bytes_freed > 0);
    assert!(!store.has_blob(&orphan.digest));
    assert!(store.has_blob(&extra.digest));
    let img = store.resolve("kept:1").expect("kept").image;
    assert!(store.has_blob(&img.id));
    for l in img.layer_digests().expect("layers") {
        assert!(store.has_blob(&l));
    }
    // A second collection finds nothing.
    assert_eq!(store.gc(&roots).expect("gc").blobs_removed, 0);
}

#[test]
fn concurrent_index_updates_lose_nothing() {
    let tmp = scratch();
    let store = Store::open(tmp.path()).expect("open");
    let d = put_image(&store, "shared");
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            let d = d.clone();
            std::thread::spawn(move || {
                for i in 0..10 {
                    store
                        .add_image(&d, &[r(&format!("t{t}:v{i}"))])
                        .expect("add");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    assert_eq!(store.read_index().expect("index").manifests().len(), 80);
}
