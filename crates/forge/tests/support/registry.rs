//! Registries for the registry tests: Debian's `docker-registry` on a free loopback port
//! with its own config and storage (optionally htpasswd auth or TLS), stopped on drop;
//! and a small HTTP proxy in front of one that injects faults (a corrupted byte, a 500,
//! a connection cut mid-blob, the registry killed mid-transfer) and records requests.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("local addr")
        .port()
}

/// How a registry is set up.
#[derive(Default, Clone)]
pub struct RegistryOptions {
    /// An htpasswd file: basic auth.
    pub htpasswd: Option<PathBuf>,
    /// (certificate, key): TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// A running `docker-registry`.
pub struct Registry {
    pub port: u16,
    pub dir: PathBuf,
    child: Arc<Mutex<Option<Child>>>,
}

impl Registry {
    /// Starts a registry with its storage under `dir`.
    pub fn start(dir: &Path, opts: &RegistryOptions) -> Registry {
        std::fs::create_dir_all(dir.join("data")).expect("registry dir");
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        );
        if let Some((cert, key)) = &opts.tls {
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
        }
        if let Some(h) = &opts.htpasswd {
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: forge-test\n    path: {}\n",
                h.display()
            ));
        }
        std::fs::write(dir.join("config.yml"), config).expect("registry config");
        let r = Registry {
            port,
            dir: dir.to_path_buf(),
            child: Arc::new(Mutex::new(None)),
        };
        r.restart();
        r
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// (Re)starts the registry process on the same port and storage.
    pub fn restart(&self) {
        self.stop();
        let log = std::fs::File::create(self.dir.join("registry.log")).expect("log");
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(self.dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("docker-registry (Debian package docker-registry) runs");
        *self.child.lock().expect("lock") = Some(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "registry on port {} did not come up: {}",
                self.port,
                std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the registry (SIGKILL, as a crash).
    pub fn stop(&self) {
        kill_child(&self.child);
    }

    /// A closure that kills this registry (for the proxy).
    pub fn killer(&self) -> Arc<dyn Fn() + Send + Sync> {
        let child = self.child.clone();
        Arc::new(move || kill_child(&child))
    }
}

fn kill_child(child: &Mutex<Option<Child>>) {
    if let Some(mut c) = child.lock().expect("lock").take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the proxy does to the traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Nothing: pass everything through.
    None,
    /// Flip one byte (at offset 100) of GET bodies of blobs whose path contains this.
    Corrupt(String),
    /// Answer 500 to every GET of blobs whose path contains this.
    Status500(String),
    /// Answer 500 to the next GET of a blob whose path contains this, then pass through.
    Status500Once(String),
    /// Close the connection after this many body bytes of the next GET of a blob whose
    /// path contains the string, then pass through.
    CutOnce(String, u64),
    /// After this many body bytes of a blob GET, kill the registry and close.
    KillDuringPull(u64),
    /// After this many body bytes of an upload (PATCH/PUT), kill the registry and close.
    KillDuringPush(u64),
}

/// A fault-injecting HTTP/1.1 proxy: one request per connection (it forces
/// `Connection: close`).
pub struct FaultProxy {
    pub port: u16,
    pub fault: Arc<Mutex<Fault>>,
    /// When set, the proxy plays a token-auth registry: `/token` hands out this token,
    /// every other request without `Authorization: Bearer <token>` gets a 401 challenge.
    pub bearer: Arc<Mutex<Option<String>>>,
    pub log: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    /// A proxy to `127.0.0.1:upstream`; `kill` kills the registry behind it.
    pub fn start(upstream: u16, kill: Arc<dyn Fn() + Send + Sync>) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        let port = listener.local_addr().expect("addr").port();
        let fault = Arc::new(Mutex::new(Fault::None));
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let bearer = Arc::new(Mutex::new(None));
        let (f, l, s, b) = (fault.clone(), log.clone(), stop.clone(), bearer.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (f, l, k, b) = (f.clone(), l.clone(), kill.clone(), b.clone());
                std::thread::spawn(move || {
                    let token = b.lock().expect("lock").clone();
                    let _ = handle(conn, upstream, port, token, &f, &l, &*k);
                });
            }
        });
        FaultProxy {
            port,
            fault,
            bearer,
            log,
            stop,
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn set_bearer(&self, token: Option<&str>) {
        *self.bearer.lock().expect("lock") = token.map(str::to_string);
    }

    pub fn set(&self, fault: Fault) {
        *self.fault.lock().expect("lock") = fault;
    }

    /// The requests seen so far: `METHOD PATH [range=…]`.
    pub fn requests(&self) -> Vec<String> {
        self.log.lock().expect("lock").clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

struct Head {
    first: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn bytes(&self) -> Vec<u8> {
        let mut s = format!("{}\r\n", self.first);
        for (k, v) in &self.headers {
            if k.eq_ignore_ascii_case("connection") {
                continue;
            }
            s.push_str(&format!("{k}: {v}\r\n"));
        }
        s.push_str("Connection: close\r\n\r\n");
        s.into_bytes()
    }
}

fn read_head(r: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut first = String::new();
    if r.read_line(&mut first)? == 0 {
        return Ok(None);
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok(Some(Head {
        first: first.trim_end().to_string(),
        headers,
    }))
}

fn handle(
    client: TcpStream,
    upstream: u16,
    own_port: u16,
    token: Option<String>,
    fault: &Mutex<Fault>,
    log: &Mutex<Vec<String>>,
    kill: &(dyn Fn() + Send + Sync),
) -> io::Result<()> {
    let mut client_in = BufReader::new(client.try_clone()?);
    let mut client_out = client;
    let Some(mut req) = read_head(&mut client_in)? else {
        return Ok(());
    };
    let mut parts = req.first.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let range = req.get("range").map(str::to_string);
    log.lock().expect("lock").push(match &range {
        Some(r) => format!("{method} {path} range={r}"),
        None => format!("{method} {path}"),
    });
    if let Some(token) = token {
        let reply = |out: &mut TcpStream, head: &str, body: &str| {
            out.write_all(
                format!(
                    "{head}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
        };
        if path.starts_with("/token") {
            return reply(
                &mut client_out,
                "HTTP/1.1 200 OK",
                &format!(r#"{{"token":"{token}"}}"#),
            );
        }
        if req.get("authorization") != Some(format!("Bearer {token}").as_str()) {
            return reply(
                &mut client_out,
                &format!("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://127.0.0.1:{own_port}/token\",service=\"forge-test\""),
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            );
        }
        req.headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
    }
    let current = fault.lock().expect("lock").clone();
    let is_blob_get = method == "GET" && path.contains("/blobs/sha256:");
    if let Fault::Status500(t) | Fault::Status500Once(t) = &current {
        if is_blob_get && path.contains(t.as_str()) {
            if matches!(current, Fault::Status500Once(_)) {
                *fault.lock().expect("lock") = Fault::None;
            }
            let body =
                r#"{"errors":[{"code":"UNKNOWN","message":"injected failure for testing"}]}"#;
            client_out.write_all(
                format!(
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )?;
            return Ok(());
        }
    }
    let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else {
        // The registry is down: drop the connection, as a dead server would.
        let _ = client_out.shutdown(Shutdown::Both);
        return Ok(());
    };
    up.write_all(&req.bytes())?;
    let body_len: u64 = req
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let is_upload = matches!(method.as_str(), "PATCH" | "PUT") && path.contains("/blobs/uploads/");
    if body_len > 0 {
        if let (Fault::KillDuringPush(n), true) = (&current, is_upload) {
            let n = (*n).min(body_len / 2);
            io::copy(&mut (&mut client_in).take(n), &mut up)?;
            kill();
            *fault.lock().expect("lock") = Fault::None;
            let _ = client_out.shutdown(Shutdown::Both);
            return Ok(());
        }
        io::copy(&mut (&mut client_in).take(body_len), &mut up)?;
    }
    let mut up_in = BufReader::new(up);
    let Some(resp) = read_head(&mut up_in)? else {
        return Ok(());
    };
    client_out.write_all(&resp.bytes())?;
    let ok = resp.first.contains(" 200 ") || resp.first.contains(" 206 ");
    let mut sent: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = up_in.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = &mut buf[..n];
        if is_blob_get && ok {
            let end = sent + n as u64;
            let cut_at = match &current {
                Fault::Corrupt(t) if path.contains(t.as_str()) && sent <= 100 && 100 < end => {
                    chunk[(100 - sent) as usize] ^= 0xff;
                    None
                }
                Fault::CutOnce(t, limit) if path.contains(t.as_str()) && end >= *limit => {
                    Some(*limit)
                }
                Fault::KillDuringPull(limit) if end >= *limit => {
                    kill();
                    Some(*limit)
                }
                _ => None,
            };
            if let Some(limit) = cut_at {
                client_out.write_all(&chunk[..(limit - sent) as usize])?;
                *fault.lock().expect("lock") = Fault::None;
                let _ = client_out.shutdown(Shutdown::Both);
                return Ok(());
            }
        }
        client_out.write_all(chunk)?;
        sent += n as u64;
    }
    Ok(())
}
