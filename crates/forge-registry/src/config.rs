//! forge's configuration file (docker `daemon.json`'s `registry-mirrors` and
//! `insecure-registries`) and the credentials file (docker's `config.json` `auths`).
//!
//! Both are JSON objects and their keys do not collide, so when `$DOCKER_CONFIG` is unset
//! the credentials live in forge's own config file; writing one part keeps every other
//! key of the file as it was.

use std::fs;
use std::io::{self, Write as _};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::error::ConfigError;

/// Where docker.io's registry API lives.
pub const DOCKER_HUB_REGISTRY: &str = "registry-1.docker.io";
/// The key docker's `config.json` stores Docker Hub credentials under.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// The environment the defaults depend on, passed in so this crate reads none itself.
#[derive(Debug, Clone, Default)]
pub struct ConfigEnv {
    /// `$FORGE_CONFIG`.
    pub forge_config: Option<PathBuf>,
    /// `$DOCKER_CONFIG` (a directory holding `config.json`).
    pub docker_config: Option<PathBuf>,
    /// Whether we run as root.
    pub is_root: bool,
    /// `$XDG_CONFIG_HOME`.
    pub xdg_config_home: Option<PathBuf>,
    /// `$HOME`.
    pub home: Option<PathBuf>,
}

impl ConfigEnv {
    /// forge's config file: `$FORGE_CONFIG`, else `/etc/forge/config.json` for root, else
    /// `$XDG_CONFIG_HOME/forge/config.json` (`~/.config/forge/config.json`).
    pub fn config_file(&self) -> PathBuf {
        if let Some(p) = self
            .forge_config
            .clone()
            .filter(|p| !p.as_os_str().is_empty())
        {
            return p;
        }
        if self.is_root {
            return PathBuf::from("/etc/forge/config.json");
        }
        let base = match self.xdg_config_home.clone().filter(|p| p.is_absolute()) {
            Some(x) => x,
            None => self
                .home
                .clone()
                .unwrap_or_else(|| PathBuf::from("/tmp"))
                .join(".config"),
        };
        base.join("forge/config.json")
    }

    /// The credentials file: `$DOCKER_CONFIG/config.json`, else forge's config file.
    pub fn credentials_file(&self) -> PathBuf {
        match self
            .docker_config
            .clone()
            .filter(|p| !p.as_os_str().is_empty())
        {
            Some(d) => d.join("config.json"),
            None => self.config_file(),
        }
    }

    /// Directories of per-registry CA files, searched in order: docker's
    /// `/etc/docker/certs.d` and `certs.d` beside forge's config file.
    pub fn certs_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![PathBuf::from("/etc/docker/certs.d")];
        if let Some(parent) = self.config_file().parent() {
            dirs.push(parent.join("certs.d"));
        }
        dirs
    }
}

/// The registry part of forge's config file.
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    /// The file it was read from.
    pub path: PathBuf,
    /// Whether that file exists.
    pub exists: bool,
    /// `registry-mirrors`: base URLs tried in order for docker.io images.
    pub mirrors: Vec<String>,
    /// `insecure-registries`: `host[:port]` or CIDR ranges that may use plain HTTP and
    /// unverified TLS.
    pub insecure: Vec<String>,
    /// Where per-registry CA files are looked for.
    pub certs_dirs: Vec<PathBuf>,
}

impl RegistryConfig {
    /// Reads forge's config file; a missing file is an empty configuration.
    pub fn load(env: &ConfigEnv) -> Result<RegistryConfig, ConfigError> {
        let path = env.config_file();
        let (doc, exists) = read_object(&path)?;
        let strings = |key: &str| -> Result<Vec<String>, ConfigError> {
            match doc.get(key) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|v| {
                        v.as_str().map(str::to_string).ok_or(ConfigError::Field {
                            path: path.clone(),
                            key: key.to_string(),
                            expected: "an array of strings",
                        })
                    })
                    .collect(),
                Some(_) => Err(ConfigError::Field {
                    path: path.clone(),
                    key: key.to_string(),
                    expected: "an array of strings",
                }),
            }
        };
        let mirrors = strings("registry-mirrors")?
            .into_iter()
            .map(|m| normalise_mirror(&m).ok_or(m))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|mirror| ConfigError::BadMirror {
                path: path.clone(),
                mirror,
            })?;
        let insecure = strings("insecure-registries")?;
        Ok(RegistryConfig {
            exists,
            mirrors,
            insecure,
            certs_dirs: env.certs_dirs(),
            path,
        })
    }

    /// Whether `host` (`name[:port]`) was declared insecure, by name or by an address
    /// range containing it.
    pub fn is_declared_insecure(&self, host: &str) -> bool {
        let host = host.trim_end_matches('/');
        let (name, _) = split_host_port(host);
        self.insecure.iter().any(|entry| {
            let entry = entry
                .trim_start_matches("http://")
                .trim_start_matches("https://")
                .trim_end_matches('/');
            if entry == host || entry == name {
                return true;
            }
            match (cidr(entry), name.parse::<IpAddr>()) {
                (Some((net, bits)), Ok(ip)) => in_range(ip, net, bits),
                _ => false,
            }
        })
    }

    /// The ranges `forge info` lists: the declared ones plus loopback, which is always
    /// allowed plain HTTP (as docker's default `127.0.0.0/8`).
    pub fn insecure_display(&self) -> Vec<String> {
        let mut out: Vec<String> = self.insecure.clone();
        for implicit in ["127.0.0.0/8", "::1/128"] {
            if !out.iter().any(|e| e == implicit) {
                out.push(implicit.to_string());
            }
        }
        out
    }
}

/// `http(s)://host[:port][/]` → `scheme://host[:port]`; a bare host gets `https://`.
fn normalise_mirror(m: &str) -> Option<String> {
    let m = m.trim().trim_end_matches('/');
    let (scheme, rest) = match m.split_once("://") {
        Some((s @ ("http" | "https"), r)) => (s, r),
        Some(_) => return None,
        None => ("https", m),
    };
    if rest.is_empty() || rest.contains('/') {
        return None;
    }
    Some(format!("{scheme}://{rest}"))
}

/// `host:port` → (`host`, `port`); IPv6 in brackets keeps its brackets off.
pub fn split_host_port(host: &str) -> (&str, Option<&str>) {
    if let Some(rest) = host.strip_prefix('[') {
        if let Some((inner, tail)) = rest.split_once(']') {
            return (inner, tail.strip_prefix(':'));
        }
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
        _ => (host, None),
    }
}

/// Whether `host` is this machine: `localhost`, 127.0.0.0/8 or ::1.
pub fn is_loopback(host: &str) -> bool {
    let (name, _) = split_host_port(host);
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn cidr(s: &str) -> Option<(IpAddr, u32)> {
    let (net, bits) = s.split_once('/')?;
    Some((net.parse().ok()?, bits.parse().ok()?))
}

fn in_range(ip: IpAddr, net: IpAddr, bits: u32) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// A user name and password (or identity token) for one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user.
    pub username: String,
    /// The password or token.
    pub password: String,
}

/// docker's `config.json` `auths`: `{"auths": {"host": {"auth": base64("user:pass")}}}`.
#[derive(Debug, Clone)]
pub struct CredentialStore {
    path: PathBuf,
}

impl CredentialStore {
    /// The credentials file at `path`.
    pub fn new(path: PathBuf) -> CredentialStore {
        CredentialStore { path }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The credentials stored for `registry` (a host, as in a reference's domain).
    pub fn get(&self, registry: &str) -> Result<Option<Credentials>, ConfigError> {
        let (doc, _) = read_object(&self.path)?;
        let Some(Value::Object(auths)) = doc.get("auths") else {
            return Ok(None);
        };
        let wanted = auth_key(registry);
        for (key, entry) in auths {
            if auth_key(key) != wanted {
                continue;
            }
            let bad = |reason: &str| ConfigError::BadAuth {
                path: self.path.clone(),
                registry: key.clone(),
                reason: reason.to_string(),
            };
            if let (Some(u), Some(p)) = (
                entry.get("username").and_then(Value::as_str),
                entry.get("password").and_then(Value::as_str),
            ) {
                return Ok(Some(Credentials {
                    username: u.to_string(),
                    password: p.to_string(),
                }));
            }
            let Some(auth) = entry.get("auth").and_then(Value::as_str) else {
                continue;
            };
            if auth.is_empty() {
                continue;
            }
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| bad("\"auth\" is not base64"))?;
            let text = String::from_utf8(raw).map_err(|_| bad("\"auth\" is not UTF-8"))?;
            let (u, p) = text
                .split_once(':')
                .ok_or_else(|| bad("\"auth\" is not user:password"))?;
            return Ok(Some(Credentials {
                username: u.to_string(),
                password: p.to_string(),
            }));
        }
        Ok(None)
    }

    /// Stores `creds` for `registry`, keeping everything else in the file.
    pub fn set(&self, registry: &str, creds: &Credentials) -> Result<(), ConfigError> {
        let (mut doc, _) = read_object(&self.path)?;
        let auths = doc
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        if let Value::Object(auths) = auths {
            let wanted = auth_key(registry);
            auths.retain(|k, _| auth_key(k) != wanted);
            let encoded = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", creds.username, creds.password));
            let mut entry = Map::new();
            entry.insert("auth".into(), Value::String(encoded));
            auths.insert(wanted, Value::Object(entry));
        }
        write_object(&self.path, &doc)
    }

    /// Removes the credentials of `registry`; returns whether there were any.
    pub fn remove(&self, registry: &str) -> Result<bool, ConfigError> {
        let (mut doc, exists) = read_object(&self.path)?;
        if !exists {
            return Ok(false);
        }
        let wanted = auth_key(registry);
        let removed = match doc.get_mut("auths") {
            Some(Value::Object(auths)) => {
                let before = auths.len();
                auths.retain(|k, _| auth_key(k) != wanted);
                auths.len() != before
            }
            _ => false,
        };
        if removed {
            write_object(&self.path, &doc)?;
        }
        Ok(removed)
    }
}

/// The `auths` key of a registry, as docker writes it: Docker Hub's legacy URL, else the
/// bare `host[:port]` (entries written as URLs by other tools match too).
pub fn auth_key(registry: &str) -> String {
    let host = registry
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or(host);
    match host {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB_AUTH_KEY.into(),
        h => h.to_string(),
    }
}

fn read_object(path: &Path) -> Result<(Map<String, Value>, bool), ConfigError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Map::new(), false)),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok((Map::new(), true));
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok((m, true)),
        Ok(_) => Err(ConfigError::NotAnObject {
            path: path.to_path_buf(),
        }),
        Err(source) => Err(ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes the file atomically (a temp file beside it, fsynced, renamed), owner-only
/// readable since it holds passwords.
fn write_object(path: &Path, doc: &Map<String, Value>) -> Result<(), ConfigError> {
    let err = |source| ConfigError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(err)?;
    let mut bytes = serde_json::to_vec_pretty(&Value::Object(doc.clone()))
        .map_err(|e| err(io::Error::other(e)))?;
    bytes.push(b'\n');
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("config"),
        std::process::id()
    ));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_matching() {
        let c = RegistryConfig {
            insecure: vec!["10.0.0.0/8".into(), "reg.local:5000".into(), "plain".into()],
            ..Default::default()
        };
        assert!(c.is_declared_insecure("10.1.2.3:5000"));
        assert!(!c.is_declared_insecure("11.1.2.3:5000"));
        assert!(c.is_declared_insecure("reg.local:5000"));
        assert!(!c.is_declared_insecure("reg.local:5001"));
        assert!(c.is_declared_insecure("plain:443"));
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("[::1]:5000"));
        assert!(is_loopback("localhost"));
        assert!(!is_loopback("example.com:5000"));
    }

    #[test]
    fn credentials_round_trip_and_keep_other_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        fs::write(&path, r#"{"registry-mirrors": ["http://m:1"]}"#).expect("write");
        let store = CredentialStore::new(path.clone());
        let creds = Credentials {
            username: "u".into(),
            password: "p:w".into(),
        };
        store.set("127.0.0.1:5000", &creds).expect("set");
        assert_eq!(store.get("127.0.0.1:5000").expect("get"), Some(creds));
        assert_eq!(store.get("other").expect("get"), None);
        let text = fs::read_to_string(&path).expect("read");
        assert!(text.contains("registry-mirrors"), "{text}");
        assert!(store.remove("127.0.0.1:5000").expect("remove"));
        assert!(!store.remove("127.0.0.1:5000").expect("remove"));
        assert_eq!(auth_key("docker.io"), DOCKER_HUB_AUTH_KEY);
        assert_eq!(auth_key("https://h:5/v2/"), "h:5");
    }

    #[test]
    fn mirrors_normalised() {
        assert_eq!(normalise_mirror("http://m:1/"), Some("http://m:1".into()));
        assert_eq!(normalise_mirror("m"), Some("https://m".into()));
        assert_eq!(normalise_mirror("ftp://m"), None);
    }
}
