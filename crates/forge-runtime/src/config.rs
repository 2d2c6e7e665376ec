//! What a container is: [`CreateOptions`] (docker's `run`/`create` flags,
//! parsed) and the [`ContainerConfig`] they become once the image's config
//! has been applied, stored as `containers/<id>/config.json`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};

/// The network namespace of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// A network namespace of its own with `lo` (the default). Ports are
    /// reached through the forwarders of `-p`.
    #[default]
    Private,
    /// The same as private: only `lo`, and no ports may be published.
    None,
    /// The host's network namespace.
    Host,
}

impl NetworkMode {
    pub fn parse(s: &str) -> Result<NetworkMode> {
        match s {
            "private" | "default" | "bridge" => Ok(NetworkMode::Private),
            "none" => Ok(NetworkMode::None),
            "host" => Ok(NetworkMode::Host),
            _ => Err(RuntimeError::Invalid {
                what: "network",
                value: s.to_owned(),
                reason: "use none, host or private".to_owned(),
            }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            NetworkMode::Private => "private",
            NetworkMode::None => "none",
            NetworkMode::Host => "host",
        }
    }
}

/// A mount as asked for with `-v`, `--tmpfs` or an image `VOLUME`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "Type", rename_all = "lowercase")]
pub enum MountConfig {
    /// `-v /host/path:/target[:ro]`.
    Bind {
        #[serde(rename = "Source")]
        source: String,
        #[serde(rename = "Destination")]
        target: String,
        #[serde(rename = "ReadOnly")]
        readonly: bool,
    },
    /// `-v name:/target[:ro]`, or an anonymous volume (image `VOLUME`, `-v /target`).
    Volume {
        #[serde(rename = "Name")]
        name: String,
        #[serde(rename = "Destination")]
        target: String,
        #[serde(rename = "ReadOnly")]
        readonly: bool,
        #[serde(rename = "Anonymous")]
        anonymous: bool,
    },
    /// `--tmpfs /target[:size=N,mode=M]`.
    Tmpfs {
        #[serde(rename = "Destination")]
        target: String,
        #[serde(rename = "Size")]
        size: Option<u64>,
        #[serde(rename = "Mode")]
        mode: u32,
    },
}

impl MountConfig {
    pub fn target(&self) -> &str {
        match self {
            MountConfig::Bind { target, .. }
            | MountConfig::Volume { target, .. }
            | MountConfig::Tmpfs { target, .. } => target,
        }
    }
}

/// `-p [IP:][HOST:]CONTAINER[/tcp]`; host port 0 means "any free port".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortConfig {
    #[serde(rename = "HostIp")]
    pub host_ip: IpAddr,
    #[serde(rename = "HostPort")]
    pub host_port: u16,
    #[serde(rename = "ContainerPort")]
    pub container_port: u16,
}

impl PortConfig {
    /// docker's `-p` syntax, TCP only.
    pub fn parse(s: &str) -> Result<PortConfig> {
        let invalid = |reason: &str| RuntimeError::Invalid {
            what: "port mapping",
            value: s.to_owned(),
            reason: reason.to_owned(),
        };
        let (spec, proto) = match s.rsplit_once('/') {
            Some((spec, proto)) => (spec, proto),
            None => (s, "tcp"),
        };
        if proto != "tcp" {
            return Err(invalid("only tcp ports are forwarded"));
        }
        let port = |p: &str| -> Result<u16> {
            p.parse::<u16>()
                .ok()
                .filter(|n| *n != 0)
                .ok_or_else(|| invalid("ports are 1 to 65535"))
        };
        // An IPv6 address is written in brackets: [::1]:8080:80.
        let (ip, rest) = if let Some(rest) = spec.strip_prefix('[') {
            let (ip, rest) = rest.split_once("]:").ok_or_else(|| invalid("bad [IPv6]"))?;
            (Some(ip), rest)
        } else {
            let parts: Vec<&str> = spec.split(':').collect();
            match parts.len() {
                1 | 2 => (None, spec),
                3 => (Some(parts[0]), &spec[parts[0].len() + 1..]),
                _ => return Err(invalid("use [IP:][HOST:]CONTAINER[/tcp]")),
            }
        };
        let host_ip: IpAddr = match ip {
            Some("") | None => IpAddr::from([0, 0, 0, 0]),
            Some(ip) => ip.parse().map_err(|_| invalid("bad host IP"))?,
        };
        let (host_port, container_port) = match rest.split_once(':') {
            Some(("", c)) => (0, port(c)?),
            Some((h, c)) => (port(h)?, port(c)?),
            None => (0, port(rest)?),
        };
        Ok(PortConfig {
            host_ip,
            host_port,
            container_port,
        })
    }
}

/// docker's `run`/`create` options, parsed but not yet combined with the image.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub name: Option<String>,
    /// Replaces the image's ENTRYPOINT (`Some("")` clears it) and drops its CMD.
    pub entrypoint: Option<String>,
    /// Replaces the image's CMD when not empty.
    pub cmd: Vec<String>,
    /// `KEY=VALUE` (`-e`, `--env-file`), applied over the image's Env.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    /// `-v` specs, as typed.
    pub volumes: Vec<String>,
    /// `--tmpfs` specs, as typed.
    pub tmpfs: Vec<String>,
    pub read_only: bool,
    pub ports: Vec<PortConfig>,
    pub publish_all: bool,
    pub network: NetworkMode,
    pub memory: Option<u64>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<u64>,
    pub labels: BTreeMap<String, String>,
    pub auto_remove: bool,
    pub tty: bool,
    pub open_stdin: bool,
}

/// A container's fixed configuration (`config.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    pub id: String,
    pub name: String,
    /// RFC 3339.
    pub created: String,
    /// The image as the user named it.
    pub image: String,
    /// The image id (config digest).
    pub image_id: String,
    /// The chain ID of the image's top layer (`None`: an image with no layers).
    pub top_chain: Option<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub hostname: String,
    pub network: NetworkMode,
    pub mounts: Vec<MountConfig>,
    pub ports: Vec<PortConfig>,
    pub memory: Option<u64>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    pub stop_signal: String,
    /// Seconds between the stop signal and SIGKILL.
    pub stop_timeout: u64,
    pub labels: BTreeMap<String, String>,
    pub auto_remove: bool,
    pub read_only: bool,
    pub tty: bool,
    pub open_stdin: bool,
}

impl ContainerConfig {
    /// ENTRYPOINT + CMD: what runs.
    pub fn args(&self) -> Vec<String> {
        self.entrypoint.iter().chain(&self.cmd).cloned().collect()
    }

    /// The command as docker's container list shows it: the program, then its
    /// arguments, each one with a space in it between single quotes.
    pub fn command_line(&self) -> String {
        let args = self.args();
        let mut words = args.iter();
        let mut out = words.next().cloned().unwrap_or_default();
        for a in words {
            out.push(' ');
            if a.contains(' ') {
                out.push_str(&format!("'{a}'"));
            } else {
                out.push_str(a);
            }
        }
        out
    }
}

/// docker's `RAMInBytes`: `64m`, `1g`, `512k`, `1024b`, bytes.
pub fn parse_memory(s: &str) -> Result<u64> {
    let invalid = || RuntimeError::Invalid {
        what: "memory size",
        value: s.to_owned(),
        reason: "use a number with an optional b, k, m or g suffix".to_owned(),
    };
    let lower = s.trim().to_ascii_lowercase();
    let lower = lower
        .strip_suffix('b')
        .filter(|r| !r.is_empty() && r.ends_with(['k', 'm', 'g', 't']))
        .unwrap_or(&lower);
    let (num, mult) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1u64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        Some('t') => (&lower[..lower.len() - 1], 1 << 40),
        Some('b') => (&lower[..lower.len() - 1], 1),
        _ => (lower, 1),
    };
    let n: f64 = num.parse().map_err(|_| invalid())?;
    if !(n >= 0.0 && n.is_finite()) {
        return Err(invalid());
    }
    Ok((n * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs() {
        let p = PortConfig::parse("127.0.0.1:8080:80").expect("valid");
        assert_eq!(
            (
                p.host_ip.to_string().as_str(),
                p.host_port,
                p.container_port
            ),
            ("127.0.0.1", 8080, 80)
        );
        let p = PortConfig::parse("8080:80/tcp").expect("valid");
        assert_eq!(
            (
                p.host_ip.to_string().as_str(),
                p.host_port,
                p.container_port
            ),
            ("0.0.0.0", 8080, 80)
        );
        let p = PortConfig::parse("80").expect("valid");
        assert_eq!((p.host_port, p.container_port), (0, 80));
        let p = PortConfig::parse("127.0.0.1::80").expect("valid");
        assert_eq!((p.host_port, p.container_port), (0, 80));
        assert!(PortConfig::parse("80/udp").is_err());
        assert!(PortConfig::parse("x:80").is_err());
        assert!(PortConfig::parse("1:2:3:4").is_err());
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("64m").expect("valid"), 64 << 20);
        assert_eq!(parse_memory("1G").expect("valid"), 1 << 30);
        assert_eq!(parse_memory("512kb").expect("valid"), 512 << 10);
        assert_eq!(parse_memory("1000").expect("valid"), 1000);
        assert!(parse_memory("lots").is_err());
    }
}
