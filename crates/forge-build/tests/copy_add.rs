//! ADD: local archives extracted (gzip, zstd, bzip2, xz, plain), `--unpack`,
//! URLs from a tiny HTTP server on 127.0.0.1 with `Last-Modified` and
//! `--checksum`, and the refusals.

mod copy_support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use copy_support::{add, op, run_ctx, Tree};
use forge_build::graph::AddOptions;

/// A tar with a directory, a file, a symlink and a hard link.
fn sample_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_path("pkg/").expect("path");
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o750);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_111);
    h.set_size(0);
    h.set_cksum();
    b.append(&h, &[][..]).expect("dir");
    let data = b"#!/bin/sh\necho tool\n";
    let mut h = tar::Header::new_gnu();
    h.set_path("pkg/bin/tool").expect("path");
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o755);
    h.set_uid(1);
    h.set_gid(2);
    h.set_mtime(12_345);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, &data[..]).expect("file");
    let mut h = tar::Header::new_gnu();
    h.set_path("pkg/link").expect("path");
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_link_name("bin/tool").expect("link");
    h.set_mode(0o777);
    h.set_mtime(12_345);
    h.set_size(0);
    h.set_cksum();
    b.append(&h, &[][..]).expect("symlink");
    let mut h = tar::Header::new_gnu();
    h.set_path("pkg/hard").expect("path");
    h.set_entry_type(tar::EntryType::Link);
    h.set_link_name("pkg/bin/tool").expect("link");
    h.set_mode(0o755);
    h.set_uid(1);
    h.set_gid(2);
    h.set_mtime(12_345);
    h.set_size(0);
    h.set_cksum();
    b.append(&h, &[][..]).expect("hardlink");
    b.into_inner().expect("tar")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).expect("zstd")
}

fn bzip2(data: &[u8]) -> Vec<u8> {
    let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    e.write_all(data).expect("bzip2");
    e.finish().expect("bzip2")
}

fn xz(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    lzma_rs::xz_compress(&mut &data[..], &mut out).expect("xz");
    out
}

fn check_sample(r: &copy_support::Run, root: &str) {
    let p = |s: &str| format!("{root}{s}");
    assert_eq!(r.read(&p("pkg/bin/tool")), "#!/bin/sh\necho tool\n");
    assert_eq!(r.mode(&p("pkg/bin/tool")), 0o755);
    assert_eq!(r.owner(&p("pkg/bin/tool")), (1, 2));
    assert_eq!(r.mtime(&p("pkg/bin/tool")), 12_345);
    assert_eq!(r.mode(&p("pkg")), 0o750);
    assert_eq!(r.mtime(&p("pkg")), 1_111);
    // An implied parent: 0755 root.
    assert_eq!(r.mode(&p("pkg/bin")), 0o755);
    assert_eq!(r.link(&p("pkg/link")), "bin/tool");
    assert_eq!(
        r.meta(&p("pkg/hard")).ino(),
        r.meta(&p("pkg/bin/tool")).ino()
    );
}

#[test]
fn local_archives_are_extracted_whatever_their_compression() {
    let tar = sample_tar();
    let ctx = Tree::new();
    ctx.bytes("a.tar", &tar)
        .bytes("a.tar.gz", &gzip(&tar))
        .bytes("a.tzst", &zstd(&tar))
        .bytes("a.tar.bz2", &bzip2(&tar))
        // The name does not matter, the content does.
        .bytes("archive.bin", &xz(&tar));
    for name in ["a.tar", "a.tar.gz", "a.tzst", "a.tar.bz2", "archive.bin"] {
        let r = run_ctx(ctx.path(), &add(&[name], "/opt/"), None);
        let out = r.ok();
        assert_eq!(out.archives, 1, "{name}");
        assert_eq!(
            r.listing(),
            [
                "opt/",
                "opt/pkg/",
                "opt/pkg/bin/",
                "opt/pkg/bin/tool",
                "opt/pkg/hard",
                "opt/pkg/link"
            ],
            "{name}"
        );
        check_sample(&r, "opt/");
    }
    // Without a trailing slash the destination is still a directory.
    let r = run_ctx(ctx.path(), &add(&["a.tar.gz"], "/x"), None);
    check_sample(&r, "x/");
}

#[test]
fn unpack_false_copies_the_archive_and_non_archives_are_copied() {
    let tar = sample_tar();
    let ctx = Tree::new();
    ctx.bytes("a.tar.gz", &gzip(&tar))
        .bytes("fake.tar.gz", b"not an archive at all")
        .bytes("notar.gz", &gzip(b"plain text, gzipped"));
    let mut c = add(&["a.tar.gz"], "/opt/");
    c.add = Some(AddOptions {
        unpack: Some(false),
        checksum: None,
        keep_git_dir: false,
    });
    let r = run_ctx(ctx.path(), &c, None);
    assert_eq!(r.ok().archives, 0);
    assert_eq!(r.listing(), ["opt/", "opt/a.tar.gz"]);
    let r = run_ctx(ctx.path(), &add(&["fake.tar.gz", "notar.gz"], "/d/"), None);
    assert_eq!(r.ok().archives, 0);
    assert_eq!(r.listing(), ["d/", "d/fake.tar.gz", "d/notar.gz"]);
    // COPY never extracts.
    let r = run_ctx(ctx.path(), &op(&["a.tar.gz"], "/c/"), None);
    assert_eq!(r.listing(), ["c/", "c/a.tar.gz"]);
}

/// docker 20.10's BuildKit (the peer case p-addlocal): `--chown` gives the destination
/// directory it creates its owner, while the archive's entries keep theirs.
#[test]
fn archive_entries_keep_their_owners_under_chown() {
    let ctx = Tree::new();
    ctx.bytes("a.tar", &sample_tar());
    let mut c = add(&["a.tar"], "/o/");
    c.chown = Some("77:88".into());
    let r = run_ctx(ctx.path(), &c, None);
    r.ok();
    assert_eq!(r.owner("o/pkg/bin/tool"), (1, 2));
    assert_eq!(r.owner("o/pkg/link"), (0, 0));
    assert_eq!(r.owner("o"), (77, 88));
}

fn raw_entry(name: &[u8], kind: tar::EntryType, link: &[u8], data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_mtime(1);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

#[test]
fn archive_entries_never_leave_the_extraction_root() {
    let host = Tree::new();
    let host_dir = host.path().to_string_lossy().into_owned();
    // `..` is refused.
    let mut t = raw_entry(b"../escape", tar::EntryType::Regular, b"", b"x");
    t.extend(vec![0u8; 1024]);
    let ctx = Tree::new();
    ctx.bytes("evil.tar", &t);
    let r = run_ctx(ctx.path(), &add(&["evil.tar"], "/x/"), None);
    assert!(r.err().contains("outside extraction root"), "{}", r.err());
    // Absolute names land inside; a symlink to a host directory is followed
    // inside the extraction root, never on the host.
    let mut t = raw_entry(b"/abs.txt", tar::EntryType::Regular, b"", b"abs");
    t.extend(raw_entry(
        b"link",
        tar::EntryType::Symlink,
        host_dir.as_bytes(),
        b"",
    ));
    t.extend(raw_entry(
        b"link/pwned",
        tar::EntryType::Regular,
        b"",
        b"pwned",
    ));
    t.extend(vec![0u8; 1024]);
    ctx.bytes("evil2.tar", &t);
    let r = run_ctx(ctx.path(), &add(&["evil2.tar"], "/x/"), None);
    r.ok();
    assert_eq!(fs_count(host.path()), 0, "nothing on the host");
    assert_eq!(r.read("x/abs.txt"), "abs");
    assert_eq!(r.link("x/link"), host_dir);
    let inside = format!("x/{}/pwned", host_dir.trim_start_matches('/'));
    assert_eq!(r.read(&inside), "pwned");
}

fn fs_count(p: &std::path::Path) -> usize {
    std::fs::read_dir(p).expect("read_dir").count()
}

/// Serves `body` at `/file.bin` (with Last-Modified), at `/nolm` (without),
/// an archive at `/a.tar`, and 404 elsewhere, for `max` requests.
fn serve(body: Vec<u8>, tar: Vec<u8>, max: usize) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(max) {
            let Ok(mut s) = stream else { continue };
            h.fetch_add(1, Ordering::SeqCst);
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&req)
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let (status, extra, content): (&str, &str, &[u8]) = match path.as_str() {
                "/dir/file.bin" => (
                    "200 OK",
                    "Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\n",
                    &body,
                ),
                "/nolm" => ("200 OK", "", &body),
                "/a.tar" => ("200 OK", "", &tar),
                _ => ("404 Not Found", "", b"nope"),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
                content.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(content);
        }
    });
    (format!("http://{addr}"), hits)
}

fn sha256_hex(data: &[u8]) -> String {
    forge_oci::Digest::sha256_of(data).to_string()
}

#[test]
fn urls_are_downloaded_with_their_time_and_checked() {
    let body = b"downloaded content\n".to_vec();
    let (base, hits) = serve(body.clone(), sample_tar(), 16);
    let ctx = Tree::new();
    let url = format!("{base}/dir/file.bin");

    // Into a directory: named after the URL; 0600; Last-Modified.
    let r = run_ctx(ctx.path(), &add(&[&url], "/dl/"), None);
    let out = r.ok();
    assert_eq!(r.listing(), ["dl/", "dl/file.bin"]);
    assert_eq!(r.read("dl/file.bin"), "downloaded content\n");
    assert_eq!(r.mode("dl/file.bin"), 0o600);
    assert_eq!(r.mtime("dl/file.bin"), 784_111_777);
    assert_eq!(out.urls.len(), 1);
    assert_eq!(out.urls[0].digest.to_string(), sha256_hex(&body));
    assert_eq!(out.urls[0].size, body.len() as u64);

    // Onto a path: the file is the destination itself.
    let r = run_ctx(ctx.path(), &add(&[&url], "/named"), None);
    assert_eq!(r.listing(), ["named"]);

    // Without Last-Modified the time is the download's.
    let before = std::time::SystemTime::now();
    let r = run_ctx(ctx.path(), &add(&[&format!("{base}/nolm")], "/n/"), None);
    r.ok();
    let t = r.mtime("n/nolm");
    assert!(t >= copy_support::secs(before) as i64 - 1, "mtime {t}");

    // --checksum right, then wrong.
    let mut c = add(&[&url], "/c/");
    c.add = Some(AddOptions {
        unpack: None,
        checksum: Some(sha256_hex(&body)),
        keep_git_dir: false,
    });
    let r = run_ctx(ctx.path(), &c, None);
    assert_eq!(r.read("c/file.bin"), "downloaded content\n");
    let wrong = sha256_hex(b"something else");
    c.add = Some(AddOptions {
        unpack: None,
        checksum: Some(wrong.clone()),
        keep_git_dir: false,
    });
    let r = run_ctx(ctx.path(), &c, None);
    let e = r.err();
    assert!(e.contains(&wrong) && e.contains(&sha256_hex(&body)), "{e}");
    assert!(r.listing().is_empty(), "nothing written on a mismatch");

    // A 404 is an error naming the URL.
    let missing = format!("{base}/missing");
    let r = run_ctx(ctx.path(), &add(&[&missing], "/m/"), None);
    assert!(r.err().contains(&missing), "{}", r.err());

    // Remote archives are not extracted, unless --unpack=true.
    let tar_url = format!("{base}/a.tar");
    let r = run_ctx(ctx.path(), &add(&[&tar_url], "/t/"), None);
    assert_eq!(r.listing(), ["t/", "t/a.tar"]);
    let mut c = add(&[&tar_url], "/u/");
    c.add = Some(AddOptions {
        unpack: Some(true),
        checksum: None,
        keep_git_dir: false,
    });
    let r = run_ctx(ctx.path(), &c, None);
    assert_eq!(r.ok().archives, 1);
    check_sample(&r, "u/");
    assert!(hits.load(Ordering::SeqCst) >= 8);
}

#[test]
fn refusals() {
    let ctx = Tree::new();
    ctx.file("f", "f");
    let mut c = add(&["f"], "/x");
    c.add = Some(AddOptions {
        unpack: None,
        checksum: Some(sha256_hex(b"f")),
        keep_git_dir: false,
    });
    let r = run_ctx(ctx.path(), &c, None);
    assert_eq!(
        r.err(),
        "checksum can't be specified for non-HTTP(S) sources: \"f\""
    );
    let r = run_ctx(ctx.path(), &op(&["https://example.com/x"], "/x"), None);
    assert_eq!(
        r.err(),
        "source can't be a URL for COPY: https://example.com/x"
    );
    let r = run_ctx(
        ctx.path(),
        &add(&["https://github.com/moby/buildkit.git#v0.12"], "/src"),
        None,
    );
    assert!(r.err().contains("Git repository is not supported"));
    let r = run_ctx(
        ctx.path(),
        &add(&["git@github.com:moby/buildkit.git"], "/src"),
        None,
    );
    assert!(r.err().contains("Git repository is not supported"));
}
