//! The image commands end to end through the real binary on a temporary store: import,
//! images, tag, rmi, inspect, history, save, load, image prune, system df, with docker's
//! columns, messages and exit codes.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use support::*;

#[test]
fn import_then_list_tag_inspect_history_rmi() {
    let tmp = scratch("cli-basic");
    let root = tmp.path().join("store");
    let id = import_busybox(&root, "busybox");
    assert!(
        id.starts_with("sha256:") && id.len() == 71,
        "import prints the image id: {id}"
    );

    // The store is an OCI layout with the documented directories.
    for d in [
        "oci-layout",
        "index.json",
        "blobs/sha256",
        "snapshots",
        "cache",
        "statcache",
        "containers",
        "volumes",
        "tmp",
    ] {
        assert!(root.join(d).exists(), "{d} exists");
    }
    let short = &id[7..19];
    let images = ok(&root, &["images"]);
    let lines: Vec<&str> = images.lines().collect();
    // CREATED is as wide as its longest cell ("Less than a second ago", "2 seconds ago").
    assert!(
        lines[0].starts_with("REPOSITORY   TAG       IMAGE ID       CREATED   ")
            && lines[0].ends_with("   SIZE"),
        "{images}"
    );
    assert!(
        lines[1].starts_with(&format!("busybox      latest    {short}   ")),
        "{images}"
    );
    assert!(
        lines[1].ends_with("MB"),
        "docker's human size: {}",
        lines[1]
    );

    // tag: a second name for the same image, in another repository.
    ok(&root, &["tag", "busybox", "localhost:5000/tools/bb:1.0"]);
    ok(&root, &["tag", short, "bb:2"]);
    let images = ok(&root, &["image", "ls"]);
    assert!(images.contains("localhost:5000/tools/bb   1.0"), "{images}");
    assert_eq!(ok(&root, &["images", "-q"]).lines().count(), 3);
    assert_eq!(
        ok(&root, &["images", "-q", "--no-trunc", "bb"]).trim(),
        id,
        "filter by repository, full id"
    );
    // The store itself carries familiar names in ref.name.
    let index = fs::read_to_string(root.join("index.json")).expect("index");
    assert!(index.contains("\"org.opencontainers.image.ref.name\":\"localhost:5000/tools/bb:1.0\""));
    assert!(index.contains("\"io.containerd.image.name\":\"docker.io/library/bb:2\""));

    // inspect: docker's keys.
    let v = inspect(&root, "bb:2");
    assert_eq!(v["Id"], id.as_str());
    let tags: Vec<&str> = v["RepoTags"]
        .as_array()
        .expect("RepoTags")
        .iter()
        .map(|t| t.as_str().expect("tag"))
        .collect();
    assert_eq!(tags.len(), 3, "{tags:?}");
    assert!(tags.contains(&"busybox:latest") && tags.contains(&"bb:2"));
    assert_eq!(v["Comment"], "Imported from -");
    assert_eq!(v["Os"], "linux");
    assert_eq!(v["RootFS"]["Type"], "layers");
    assert_eq!(v["RootFS"]["Layers"].as_array().expect("layers").len(), 1);
    assert!(v["Size"].as_u64().expect("size") > 1_000_000);
    for k in [
        "RepoDigests",
        "Parent",
        "Created",
        "Author",
        "Config",
        "Architecture",
        "Metadata",
    ] {
        assert!(v.get(k).is_some(), "inspect has {k}");
    }
    assert_eq!(
        ok(&root, &["inspect", "-f", "{{.Id}}", short]).trim(),
        id,
        "template and short id"
    );

    // history: one imported layer.
    let h = ok(&root, &["history", "busybox"]);
    let hl: Vec<&str> = h.lines().collect();
    assert!(
        hl[0].starts_with("IMAGE          CREATED   ")
            && hl[0].contains("   CREATED BY   SIZE      COMMENT"),
        "{h}"
    );
    assert!(
        hl[1].starts_with(short) && hl[1].ends_with("Imported from -"),
        "{h}"
    );
    assert_eq!(ok(&root, &["history", "-q", "busybox"]).trim(), short);
    // Imported with SOURCE_DATE_EPOCH unset: a real date, in whole seconds without -H.
    let raw = ok(&root, &["history", "-H=false", "busybox"]);
    let rl: Vec<&str> = raw.lines().collect();
    assert!(rl[0].starts_with("IMAGE          CREATED AT "), "{raw}");
    let at = rl[1].split_whitespace().nth(1).expect("date");
    assert!(at.len() == 20 && at.ends_with('Z'), "{raw}");
    assert!(rl[1].contains(" Imported from -"), "{raw}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&root, &["history", "--format", "json", "busybox"]))
            .expect("json");
    assert_eq!(json["ID"], short);
    assert_eq!(json["Comment"], "Imported from -");
    assert_eq!(
        ok(
            &root,
            &["history", "--format", "{{.ID}} {{.Comment}}", "busybox"]
        )
        .trim(),
        format!("{short} Imported from -")
    );

    // rmi: by id with names in several repositories needs -f, as docker.
    let err = fails(&root, &["rmi", short]);
    assert_eq!(
        err,
        format!("Error: conflict: unable to delete {short} (must be forced) - image is referenced in multiple repositories")
    );
    // Untagging a name keeps the image while it has others.
    assert_eq!(ok(&root, &["rmi", "bb:2"]), "Untagged: bb:2\n");
    assert_eq!(
        ok(&root, &["rmi", "localhost:5000/tools/bb:1.0"]),
        "Untagged: localhost:5000/tools/bb:1.0\n"
    );
    // The last name takes the image with it; its blobs and snapshot are collected.
    assert_eq!(
        ok(&root, &["rmi", "busybox"]),
        format!("Untagged: busybox:latest\nDeleted: {id}\n")
    );
    assert_eq!(ok(&root, &["images", "-q"]), "");
    assert!(
        list(&root.join("blobs/sha256")).is_empty(),
        "blobs collected"
    );
    assert!(
        list(&root.join("snapshots")).is_empty(),
        "snapshot collected"
    );

    // docker's errors: exit 1, "Error: No such image: x".
    assert_eq!(fails(&root, &["rmi", "nope"]), "Error: No such image: nope");
    assert_eq!(
        fails(&root, &["inspect", "nope:1"]),
        "Error: No such image: nope:1"
    );
    assert_eq!(
        fails(&root, &["history", "nope"]),
        "Error: No such image: nope"
    );
    assert_eq!(
        fails(&root, &["tag", "nope", "x"]),
        "Error: No such image: nope"
    );
    assert_eq!(
        fails(&root, &["save", "-o", "/dev/null", "nope"]),
        "Error: No such image: nope"
    );
}

#[test]
fn rmi_by_id_and_force() {
    let tmp = scratch("cli-rmi");
    let root = tmp.path().join("store");
    let id = import_busybox(&root, "a:1");
    ok(&root, &["tag", "a:1", "a:2"]);
    // Same repository: an id untags every tag and deletes the image without -f.
    let out = ok(&root, &["rmi", &id[7..19]]);
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        vec![
            format!("Deleted: {id}").as_str(),
            "Untagged: a:1",
            "Untagged: a:2"
        ]
    );

    let id = import_busybox(&root, "a:1");
    ok(&root, &["tag", "a:1", "b:1"]);
    fails(&root, &["rmi", &id]);
    let out = ok(&root, &["rmi", "-f", &id]);
    assert!(
        out.contains("Untagged: a:1") && out.contains("Untagged: b:1"),
        "{out}"
    );
    assert!(out.ends_with(&format!("Deleted: {id}\n")), "{out}");
    // Several arguments: the bad one fails, the good ones are done, exit 1.
    import_busybox(&root, "c:1");
    let r = run(&root, &["rmi", "nope", "c:1"]);
    assert_eq!(r.code, Some(1));
    assert!(r.stdout.contains("Untagged: c:1"), "{}", r.stdout);
    assert!(
        r.stderr.contains("Error: No such image: nope"),
        "{}",
        r.stderr
    );
}

#[test]
fn import_changes_message_and_stdin() {
    let tmp = scratch("cli-change");
    let root = tmp.path().join("store");
    let tar = busybox_tar();
    let r = output(
        forge(&root)
            .args([
                "import",
                "-c",
                "CMD [\"/bin/sh\", \"-c\", \"echo hi\"]",
                "--change",
                "ENV A=1 B=\"x y\"",
                "-c",
                "ENV C=${A}z",
                "-c",
                "EXPOSE 80 53/udp",
                "-c",
                "LABEL org.example=yes",
                "-c",
                "WORKDIR /srv",
                "-c",
                "USER nobody",
                "-c",
                "VOLUME [\"/data\"]",
                "-c",
                "STOPSIGNAL SIGINT",
                "-c",
                "ONBUILD RUN echo child",
                "-m",
                "hello <world>",
                "-",
                "changed:1",
            ])
            .stdin(fs::File::open(&tar).expect("tar")),
    );
    assert!(r.ok, "{}", r.stderr);
    let v = inspect(&root, "changed:1");
    let c = &v["Config"];
    assert_eq!(c["Cmd"], serde_json::json!(["/bin/sh", "-c", "echo hi"]));
    assert_eq!(c["Env"], serde_json::json!(["A=1", "B=x y", "C=1z"]));
    assert_eq!(
        c["ExposedPorts"],
        serde_json::json!({"53/udp": {}, "80/tcp": {}})
    );
    assert_eq!(c["Labels"]["org.example"], "yes");
    assert_eq!(c["WorkingDir"], "/srv");
    assert_eq!(c["User"], "nobody");
    assert_eq!(c["Volumes"], serde_json::json!({"/data": {}}));
    assert_eq!(c["StopSignal"], "SIGINT");
    assert_eq!(c["OnBuild"], serde_json::json!(["RUN echo child"]));
    assert_eq!(v["Comment"], "hello <world>");
    // Go's JSON escaping, as docker prints it.
    assert!(ok(&root, &["inspect", "changed:1"]).contains("hello \\u003cworld\\u003e"));
    assert!(ok(&root, &["history", "changed:1"]).contains("hello <world>"));

    let err = fails(
        &root,
        &["import", "-c", "RUN make", tar.to_str().expect("path")],
    );
    assert_eq!(err, "Error: RUN is not a valid change command");
    let err = fails(&root, &["import", tar.to_str().expect("path"), "Bad:Name"]);
    assert!(err.contains("invalid reference format"), "{err}");
    let err = fails(&root, &["import", "/nonexistent.tar"]);
    assert!(err.contains("/nonexistent.tar"), "{err}");
}

/// The same rootfs imported twice with SOURCE_DATE_EPOCH gives the same image id and
/// manifest digest, whatever the tarball's compression or entry order.
#[test]
fn import_is_reproducible() {
    let tmp = scratch("cli-repro");
    let root = tmp.path().join("store");
    let tree = tmp.path().join("tree");
    sh(std::process::Command::new("cp")
        .arg("-a")
        .arg(busybox_rootfs())
        .arg(&tree));
    // A file newer than the epoch: its mtime is clamped.
    fs::write(tree.join("etc/new"), b"fresh\n").expect("write");
    let plain = tmp.path().join("r.tar");
    let gz = tmp.path().join("r.tar.gz");
    let zst = tmp.path().join("r.tar.zst");
    tar_dir(&tree, &plain, None);
    tar_dir(&tree, &gz, Some("gzip"));
    tar_dir(&tree, &zst, Some("zstd"));
    // Another entry order: files listed in reverse.
    let reversed = tmp.path().join("rev.tar");
    let names = sh(std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("cd {} && find . | sort -r", tree.display())));
    let list_file = tmp.path().join("names");
    fs::write(&list_file, names).expect("names");
    sh(std::process::Command::new("tar")
        .args(["--xattrs", "--numeric-owner", "--no-recursion", "-C"])
        .arg(&tree)
        .arg("-cf")
        .arg(&reversed)
        .arg("-T")
        .arg(&list_file));

    let import = |file: &std::path::Path, name: &str| -> String {
        let r = output(forge(&root).env("SOURCE_DATE_EPOCH", "1700000000").args([
            "import",
            file.to_str().expect("path"),
            name,
        ]));
        assert!(r.ok, "{}", r.stderr);
        r.stdout.trim().to_string()
    };
    let a = import(&plain, "r:plain");
    let b = import(&gz, "r:gz");
    let c = import(&zst, "r:zst");
    let d = import(&reversed, "r:rev");
    let e = import(&plain, "r:again");
    assert_eq!(a, b, "gzip input gives the same image");
    assert_eq!(a, c, "zstd input gives the same image");
    assert_eq!(a, d, "entry order does not matter");
    assert_eq!(a, e, "importing twice gives the same image");
    let m = manifest_digest(&root, "r:plain");
    for n in ["r:gz", "r:zst", "r:rev", "r:again"] {
        assert_eq!(manifest_digest(&root, n), m, "manifest digest of {n}");
    }
    let v = inspect(&root, "r:plain");
    assert_eq!(v["Created"], "2023-11-14T22:13:20Z");
    // Without the variable, created is now: a different image.
    let f = ok(&root, &["import", plain.to_str().expect("path")]);
    assert_ne!(f.trim(), a);
    // The layer's mtimes are clamped: unpack and look.
    let out = tmp.path().join("out");
    ok(
        &root,
        &[
            "save",
            "--format",
            "oci-dir",
            "-o",
            out.to_str().expect("path"),
            "r:plain",
        ],
    );
    let listing = sh(std::process::Command::new("sh").arg("-c").arg(format!(
        "cd {} && for b in blobs/sha256/*; do tar -tvzf $b 2>/dev/null; done | grep etc/new",
        out.display()
    )));
    assert!(listing.contains("2023-11-14"), "clamped mtime: {listing}");
}

#[test]
fn images_json_digests_and_dangling() {
    let tmp = scratch("cli-json");
    let root = tmp.path().join("store");
    let id = import_busybox(&root, "app:1.0");
    let tar = busybox_tar();
    // An unnamed import is a dangling image.
    let r = output(
        forge(&root)
            .env("SOURCE_DATE_EPOCH", "0")
            .args(["import", tar.to_str().expect("path")]),
    );
    assert!(r.ok);
    let dangling = r.stdout.trim().to_string();
    let json = ok(&root, &["images", "--format", "json"]);
    let rows: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(rows.len(), 2);
    let keys: Vec<&str> = rows[0]
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "Containers",
            "CreatedAt",
            "CreatedSince",
            "Digest",
            "ID",
            "Repository",
            "SharedSize",
            "Size",
            "Tag",
            "UniqueSize",
            "VirtualSize"
        ]
    );
    assert_eq!(rows[0]["Repository"], "app", "newest first");
    assert_eq!(rows[0]["ID"], &id[7..19]);
    assert_eq!(rows[1]["Repository"], "<none>");
    assert_eq!(rows[1]["Tag"], "<none>");
    assert_eq!(rows[1]["CreatedAt"], "1970-01-01 00:00:00 +0000 UTC");
    assert!(
        json.contains("\\u003cnone\\u003e"),
        "Go's escaping of <none>"
    );
    let digests = ok(&root, &["images", "--digests", "--no-trunc"]);
    let first = digests.lines().next().expect("header");
    assert!(
        first.starts_with("REPOSITORY   TAG       DIGEST"),
        "{first}"
    );
    assert!(digests.contains(&dangling), "{digests}");
    assert!(digests.contains(&manifest_digest(&root, "app:1.0")));

    // df counts both images; prune removes the dangling one and frees its blobs.
    let df = ok(&root, &["system", "df"]);
    let lines: Vec<&str> = df.lines().collect();
    assert_eq!(
        lines[0],
        "TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE"
    );
    assert!(
        lines[1].starts_with("Images          2         0         "),
        "{df}"
    );
    assert!(lines[1].ends_with("(100%)"), "{df}");
    assert!(lines[4].starts_with("Build Cache     0"), "{df}");
    let out = ok(&root, &["image", "prune", "-f"]);
    assert!(
        out.starts_with(&format!(
            "Deleted Images:\ndeleted: {dangling}\n\nTotal reclaimed space: "
        )),
        "{out}"
    );
    assert_eq!(ok(&root, &["images", "-q", "--no-trunc"]).trim(), id);
    // Without -f, prune asks and does nothing on "no".
    let r = output(forge(&root).args(["image", "prune", "-a"]));
    assert!(
        r.ok && r
            .stdout
            .contains("Are you sure you want to continue? [y/N]")
    );
    assert_eq!(ok(&root, &["images", "-q", "--no-trunc"]).trim(), id);
    let out = ok(&root, &["image", "prune", "-a", "-f"]);
    assert!(out.contains("untagged: app:1.0") && out.contains(&format!("deleted: {id}")));
    assert_eq!(ok(&root, &["images", "-q"]), "");
    assert!(list(&root.join("blobs/sha256")).is_empty());
    assert!(list(&root.join("snapshots")).is_empty());
    let df = ok(&root, &["system", "df"]);
    assert!(
        df.lines()
            .nth(1)
            .expect("images")
            .starts_with("Images          0"),
        "{df}"
    );
}

/// `images --format` templates and `--filter`, as docker's CLI takes them.
#[test]
fn images_templates_and_filters() {
    let tmp = scratch("cli-filters");
    let root = tmp.path().join("store");
    let id = import_busybox(&root, "app:1.0");
    ok(&root, &["tag", "app:1.0", "other/tool:2"]);
    let tar = busybox_tar();
    let r = output(forge(&root).env("SOURCE_DATE_EPOCH", "0").args([
        "import",
        "-c",
        "LABEL team=core",
        tar.to_str().expect("path"),
    ]));
    assert!(r.ok, "{}", r.stderr);
    let dangling = r.stdout.trim()[7..19].to_string();

    let lines =
        |args: &[&str]| -> Vec<String> { ok(&root, args).lines().map(str::to_owned).collect() };
    assert_eq!(
        lines(&["images", "--format", "{{.Repository}}:{{.Tag}}"]),
        ["app:1.0", "other/tool:2", "<none>:<none>"]
    );
    assert_eq!(
        lines(&[
            "images",
            "--format",
            "table {{.Repository}}\\t{{.ID}}",
            "app"
        ]),
        [
            "REPOSITORY   IMAGE ID",
            &format!("app          {}", &id[7..19])
        ]
    );
    assert_eq!(
        lines(&[
            "images",
            "--format",
            "{{json .Repository}} {{lower .Tag}}",
            "other/*"
        ]),
        ["\"other/tool\" 2"]
    );
    assert_eq!(
        lines(&["images", "-q", "-f", "dangling=true"]),
        std::slice::from_ref(&dangling)
    );
    assert_eq!(lines(&["images", "-q", "-f", "dangling=false"]).len(), 2);
    assert_eq!(
        lines(&["images", "-q", "-f", "label=team=core"]),
        std::slice::from_ref(&dangling)
    );
    assert_eq!(
        lines(&["images", "-q", "-f", "label=team=other"]),
        Vec::<String>::new()
    );
    assert_eq!(
        lines(&[
            "images",
            "--format",
            "{{.Repository}}",
            "-f",
            "reference=oth*/*"
        ]),
        ["other/tool"]
    );
    // The dangling import says it was made at time 0: before everything else.
    assert_eq!(lines(&["images", "-q", "-f", "before=app:1.0"]), [dangling]);
    let err = fails(&root, &["images", "-f", "colour=blue"]);
    assert!(err.contains("invalid filter 'colour'"), "{err}");
    let err = fails(&root, &["images", "--format", "{{.Nope}}"]);
    assert!(err.contains("can't evaluate field Nope"), "{err}");
}

/// Every save format loads back, compressed or not, detected by content.
#[test]
fn save_and_load_every_format() {
    let tmp = scratch("cli-saveload");
    let root = tmp.path().join("store");
    let id = import_busybox(&root, "bb:1");
    ok(&root, &["tag", "bb:1", "bb:2"]);
    let dir = tmp.path();
    let docker = dir.join("docker.tar");
    let oci = dir.join("oci.tar");
    let layout = dir.join("layout");
    ok(&root, &["save", "-o", docker.to_str().expect("p"), "bb"]);
    ok(
        &root,
        &[
            "save",
            "--format",
            "oci-archive",
            "-o",
            oci.to_str().expect("p"),
            "bb:1",
        ],
    );
    ok(
        &root,
        &[
            "save",
            "--format",
            "oci-dir",
            "-o",
            layout.to_str().expect("p"),
            "bb:2",
        ],
    );
    // The default format is docker-archive; stdout works when redirected.
    let piped = dir.join("piped.tar");
    let status = forge(&root)
        .args(["save", "bb:1"])
        .stdout(fs::File::create(&piped).expect("create"))
        .status()
        .expect("spawn");
    assert!(status.success());
    // Deterministic: the same image saves to the same bytes.
    let again = dir.join("docker2.tar");
    ok(&root, &["save", "-o", again.to_str().expect("p"), "bb"]);
    assert_eq!(sha256_file(&docker), sha256_file(&again));

    sh(std::process::Command::new("gzip").arg("-k").arg(&docker));
    sh(std::process::Command::new("zstd").arg("-q").arg(&oci));
    let cases: Vec<(std::path::PathBuf, Vec<&str>)> = vec![
        (docker.clone(), vec!["bb:1", "bb:2"]),
        (dir.join("docker.tar.gz"), vec!["bb:1", "bb:2"]),
        (oci.clone(), vec!["bb:1"]),
        (dir.join("oci.tar.zst"), vec!["bb:1"]),
        (layout.clone(), vec!["bb:2"]),
    ];
    for (i, (file, names)) in cases.iter().enumerate() {
        let store = dir.join(format!("s{i}"));
        let out = ok(&store, &["load", "-i", file.to_str().expect("p")]);
        let mut got: Vec<&str> = out
            .lines()
            .map(|l| l.strip_prefix("Loaded image: ").expect("Loaded image line"))
            .collect();
        got.sort();
        assert_eq!(&got, names, "{}", file.display());
        assert_eq!(
            ok(&store, &["images", "-q", "--no-trunc"]).lines().next(),
            Some(id.as_str()),
            "same image id from {}",
            file.display()
        );
        assert_blobs_intact(&store);
        assert!(list(&store.join("tmp")).is_empty(), "tmp clean after load");
    }
    // From standard input, and an image saved by id loads unnamed.
    let s = dir.join("stdin");
    let r = output(
        forge(&s)
            .arg("load")
            .stdin(fs::File::open(&piped).expect("open")),
    );
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(r.stdout, "Loaded image: bb:1\n");
    let byid = dir.join("byid.tar");
    ok(
        &root,
        &["save", "-o", byid.to_str().expect("p"), &id[7..19]],
    );
    let s2 = dir.join("byid");
    assert_eq!(
        ok(&s2, &["load", "-q", "-i", byid.to_str().expect("p")]),
        format!("Loaded image ID: {id}\n")
    );
    // Loading a name that another image has moves it; the old image is kept, unnamed.
    let other = dir.join("other.tar");
    let tree = dir.join("tree");
    fs::create_dir(&tree).expect("mkdir");
    fs::write(tree.join("f"), b"x").expect("write");
    fs::set_permissions(&tree, fs::Permissions::from_mode(0o755)).expect("chmod");
    tar_dir(&tree, &other, None);
    let other_id = ok(&s, &["import", other.to_str().expect("p"), "bb:1"]);
    let out = ok(&s, &["load", "-i", piped.to_str().expect("p")]);
    assert_eq!(
        out,
        format!(
            "The image bb:1 already exists, renaming the old one with ID {} to empty string\nLoaded image: bb:1\n",
            other_id.trim()
        )
    );
    assert!(ok(&s, &["images"]).contains("<none>"));
    // Not an archive: a clear error.
    let junk = dir.join("junk");
    fs::write(
        &junk,
        b"not a tar at all, just some text that is long enough",
    )
    .expect("junk");
    let err = fails(&s, &["load", "-i", junk.to_str().expect("p")]);
    assert!(
        err.starts_with(&format!("Error: loading {}:", junk.display())),
        "{err}"
    );
}
