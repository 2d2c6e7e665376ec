//! The `testdata/build/` cases: each directory's Dockerfile built with the real CLI on a
//! store holding `busybox:latest`, the result unpacked with `umoci` and checked against
//! the case's `expected` (format in `testdata/build/README.md`). Every failing check is
//! reported with its case; `FORGE_CASE=name` runs one case.

#[path = "support/build.rs"]
mod build_support;
mod support;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use build_support::*;
use support::*;

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/build")
}

/// Splits a line into words; a word may hold `"…"` JSON strings (`key="a b"`).
fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            chars.next();
            if c == '"' {
                let mut lit = String::from("\"");
                let mut escaped = false;
                loop {
                    let c = chars.next().ok_or("unterminated string")?;
                    lit.push(c);
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
                let s: String = serde_json::from_str(&lit).map_err(|e| format!("{lit}: {e}"))?;
                word.push_str(&s);
            } else {
                word.push(c);
            }
        }
        out.push(word);
    }
    Ok(out)
}

/// A server on 127.0.0.1 serving `testdata/build/<case>/http/<file>` at `/<case>/<file>`,
/// with a Last-Modified header; returns its port.
fn http_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                match reader.read_line(&mut h) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if h == "\r\n" || h == "\n" => break,
                    Ok(_) => {}
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            let file = path
                .trim_start_matches('/')
                .split_once('/')
                .filter(|(_, f)| !f.contains(".."))
                .map(|(case, f)| cases_dir().join(case).join("http").join(f));
            let _ = match file.and_then(|f| fs::read(f).ok()) {
                Some(body) => conn
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Tue, 15 Nov 1994 12:45:26 GMT\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|_| conn.write_all(&body)),
                None => conn.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                ),
            };
        }
    });
    port
}

fn file_type(m: &fs::Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_symlink() {
        "symlink"
    } else if t.is_dir() {
        "dir"
    } else if t.is_file() {
        "file"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_char_device() {
        "char"
    } else if t.is_block_device() {
        "block"
    } else {
        "socket"
    }
}

/// Checks one `path` line against the rootfs.
fn check_path(rootfs: &Path, w: &[String]) -> Result<(), String> {
    let p = w.get(1).ok_or("path needs a path")?;
    let full = rootfs.join(p.trim_start_matches('/'));
    let m = fs::symlink_metadata(&full).map_err(|e| format!("{p}: {e}"))?;
    for attr in &w[2..] {
        let (k, v) = attr
            .split_once('=')
            .ok_or_else(|| format!("bad attribute {attr}"))?;
        let got = match k {
            "type" => file_type(&m).to_string(),
            "mode" => format!("{:04o}", m.mode() & 0o7777),
            "owner" => format!("{}:{}", m.uid(), m.gid()),
            "mtime" => m.mtime().to_string(),
            "nlink" => m.nlink().to_string(),
            "content" => {
                String::from_utf8_lossy(&fs::read(&full).map_err(|e| e.to_string())?).into_owned()
            }
            "link" => fs::read_link(&full)
                .map_err(|e| e.to_string())?
                .display()
                .to_string(),
            "contains" => {
                let text = String::from_utf8_lossy(&fs::read(&full).map_err(|e| e.to_string())?)
                    .into_owned();
                if !text.contains(v) {
                    return Err(format!("{p}: {text:?} does not contain {v:?}"));
                }
                continue;
            }
            other => return Err(format!("unknown attribute {other}")),
        };
        if got != *v {
            return Err(format!("{p}: {k} is {got:?}, expected {v:?}"));
        }
    }
    Ok(())
}

/// Builds one case; returns its failures.
/// Copies a case's directory to `to` with the modes git would give it under
/// umask 022 (0644, or 0755 when the owner may execute; directories 0755),
/// symlinks as they are and mtimes kept: results must not depend on the
/// checkout's umask.
fn stage_case(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(to)?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o755))?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let meta = fs::symlink_metadata(&src)?;
        if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src)?, &dst)?;
        } else if meta.is_dir() {
            stage_case(&src, &dst)?;
        } else {
            fs::copy(&src, &dst)?;
            let mode = if meta.permissions().mode() & 0o100 != 0 {
                0o755
            } else {
                0o644
            };
            fs::set_permissions(&dst, fs::Permissions::from_mode(mode))?;
            fs::File::options()
                .write(true)
                .open(&dst)?
                .set_modified(meta.modified()?)?;
        }
    }
    Ok(())
}

fn run_case(root: &Path, work: &Path, name: &str, port: u16) -> Vec<String> {
    let dir = work.join(format!("case-{name}"));
    let _ = fs::remove_dir_all(&dir);
    if let Err(e) = stage_case(&cases_dir().join(name), &dir) {
        return vec![format!("staging the case: {e}")];
    }
    let text = match fs::read_to_string(dir.join("expected")) {
        Ok(t) => t,
        Err(e) => return vec![format!("expected: {e}")],
    };
    // `${HOSTARCH}`: the platform forge builds for, in docker's words.
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let text = text.replace("${HOSTARCH}", arch);
    let mut lines = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        match words(t) {
            Ok(w) => lines.push((i + 1, t.to_string(), w)),
            Err(e) => return vec![format!("expected:{}: {e}", i + 1)],
        }
    }
    let tag = format!("case-{name}:test");
    let mut args: Vec<String> = vec!["-t".into(), tag.clone()];
    let mut env: Vec<(String, String)> = Vec::new();
    let mut fails: Option<String> = None;
    for (_, _, w) in &lines {
        let rest = || w.get(1).cloned().unwrap_or_default();
        match w[0].as_str() {
            "arg" => args.extend(["--build-arg".into(), rest()]),
            "target" => args.extend(["--target".into(), rest()]),
            "file" => args.extend(["-f".into(), dir.join(rest()).display().to_string()]),
            "flag" => args.push(rest()),
            "secret" => {
                let spec: Vec<String> = rest()
                    .split(',')
                    .map(|f| match f.strip_prefix("src=") {
                        Some(p) => format!("src={}", dir.join(p).display()),
                        None => f.to_string(),
                    })
                    .collect();
                args.extend(["--secret".into(), spec.join(",")]);
            }
            "setenv" => {
                let (k, v) = rest()
                    .split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .expect("setenv K=V");
                env.push((k, v));
            }
            "http" => args.extend([
                "--build-arg".into(),
                format!("HTTP=http://127.0.0.1:{port}/{name}"),
            ]),
            "parent" => {
                let parent_dir = dir.join(&w[1]);
                let r = build(
                    root,
                    &["-t", &w[2], parent_dir.to_str().expect("utf-8")],
                    &[],
                );
                if !r.ok {
                    return vec![format!("building the parent {}: {}", w[1], r.stderr)];
                }
            }
            "fails" => fails = Some(rest()),
            _ => {}
        }
    }
    args.push(dir.display().to_string());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let envv: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = build(root, &argv, &envv);
    if let Some(text) = fails {
        if r.ok {
            return vec![format!("the build should fail with {text:?}")];
        }
        if !r.stderr.contains(&text) {
            return vec![format!("stderr lacks {text:?}:\n{}", r.stderr)];
        }
        return Vec::new();
    }
    if !r.ok {
        return vec![format!("build failed ({:?}):\n{}", r.code, r.stderr)];
    }
    let case_work = work.join(name);
    let rootfs = match unpack(root, &tag, &case_work) {
        Ok(p) => p,
        Err(e) => return vec![e],
    };
    let config = image_config(root, &tag);
    let env_list: Vec<String> = config["config"]["Env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut failures = Vec::new();
    let mut history_expected: Vec<(bool, String)> = Vec::new();
    for (n, line, w) in &lines {
        let rest_of_line = line
            .split_once(char::is_whitespace)
            .map_or("", |(_, r)| r.trim());
        let result: Result<(), String> = match w[0].as_str() {
            "arg" | "target" | "file" | "flag" | "secret" | "setenv" | "http" | "parent"
            | "fails" => Ok(()),
            "path" => check_path(&rootfs, w),
            "absent" => {
                let p = rootfs.join(w[1].trim_start_matches('/'));
                match fs::symlink_metadata(&p) {
                    Ok(m) => Err(format!("{} exists ({})", w[1], file_type(&m))),
                    Err(_) => Ok(()),
                }
            }
            "config" | "top" => {
                let json = rest_of_line
                    .split_once(char::is_whitespace)
                    .map_or("", |(_, j)| j.trim());
                match serde_json::from_str::<serde_json::Value>(json) {
                    Err(e) => Err(format!("bad JSON {json}: {e}")),
                    Ok(want) => {
                        let got = if w[0] == "config" {
                            &config["config"][&w[1]]
                        } else {
                            &config[&w[1]]
                        };
                        (got == &want)
                            .then_some(())
                            .ok_or_else(|| format!("{} is {got}, expected {want}", w[1]))
                    }
                }
            }
            "env" => env_list
                .iter()
                .any(|e| e == rest_of_line)
                .then_some(())
                .ok_or_else(|| format!("Env {env_list:?} lacks {rest_of_line:?}")),
            "noenv" => (!env_list
                .iter()
                .any(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == rest_of_line))
            .then_some(())
            .ok_or_else(|| format!("Env {env_list:?} has {rest_of_line}")),
            "history" => {
                history_expected.push((w[1] == "empty", w[2].clone()));
                Ok(())
            }
            "layers" => {
                let got = config["rootfs"]["diff_ids"]
                    .as_array()
                    .map_or(0, |a| a.len());
                (got.to_string() == w[1])
                    .then_some(())
                    .ok_or_else(|| format!("{got} layers, expected {}", w[1]))
            }
            "noleak" => {
                let mut hits = find_text(root, &w[1]);
                hits.extend(find_text(&case_work, &w[1]));
                if config.to_string().contains(w[1].as_str()) {
                    hits.push("the image config".into());
                }
                hits.is_empty()
                    .then_some(())
                    .ok_or_else(|| format!("the secret leaked into {hits:?}"))
            }
            other => Err(format!("unknown check {other}")),
        };
        if let Err(e) = result {
            failures.push(format!("expected:{n} `{line}`: {e}"));
        }
    }
    if !history_expected.is_empty() {
        let history = config["history"].as_array().cloned().unwrap_or_default();
        let got: Vec<(bool, String)> = history
            .iter()
            .map(|h| {
                (
                    h["empty_layer"].as_bool().unwrap_or(false),
                    h["created_by"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        // The listed entries appear in this order, one after the other.
        if !got
            .windows(history_expected.len())
            .any(|w| w == history_expected.as_slice())
        {
            failures.push(format!(
                "history: no run of entries\n    {history_expected:?}\n  in\n    {got:?}"
            ));
        }
        let diff_ids = config["rootfs"]["diff_ids"]
            .as_array()
            .map_or(0, |a| a.len());
        let non_empty = history
            .iter()
            .filter(|h| !h["empty_layer"].as_bool().unwrap_or(false))
            .count();
        if diff_ids != non_empty {
            failures.push(format!(
                "history has {non_empty} non-empty entries for {diff_ids} layers"
            ));
        }
    }
    failures
}

#[test]
fn build_cases() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the build suite runs RUN steps in the sandbox and needs root"
    );
    let tmp = scratch("build-cases");
    let root = tmp.path().join("store");
    let work = tmp.path().join("work");
    import_busybox_image(&root);
    let port = http_server();
    let only = std::env::var("FORGE_CASE").ok();
    let mut names: Vec<String> = list(&cases_dir())
        .into_iter()
        .filter(|n| cases_dir().join(n).join("expected").is_file())
        .filter(|n| only.as_deref().is_none_or(|o| o.split(',').any(|o| o == n)))
        .collect();
    names.sort();
    if only.is_none() {
        assert!(names.len() >= 40, "at least 40 cases: {}", names.len());
    }
    let mut failures = Vec::new();
    for name in &names {
        let started = std::time::Instant::now();
        let case_failures = run_case(&root, &work, name, port);
        eprintln!(
            "case {name}: {} ({:.1}s)",
            if case_failures.is_empty() {
                "ok"
            } else {
                "FAILED"
            },
            started.elapsed().as_secs_f64()
        );
        for f in case_failures {
            failures.push(format!("[{name}] {f}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases' checks failed:\n{}",
        failures.len(),
        names.len(),
        failures.join("\n")
    );
}
