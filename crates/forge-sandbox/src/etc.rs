//! The generated `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname`.
//!
//! They are written into the sandbox's private scratch directory and
//! bind-mounted over the rootfs's files, as docker and BuildKit do, so
//! neither the image nor the upper dir ever holds them.

use std::net::IpAddr;

use crate::spec::{Network, ResolvConf};

/// BuildKit's default `/etc/hosts` (with our hostname on the loopback
/// line) followed by the extra entries.
pub(crate) fn hosts(hostname: &str, extra: &[(String, IpAddr)]) -> String {
    let mut s =
        format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for (name, ip) in extra {
        s.push_str(&format!("{ip}\t{name}\n"));
    }
    s
}

pub(crate) fn hostname(hostname: &str) -> String {
    format!("{hostname}\n")
}

fn is_loopback_nameserver(line: &str) -> bool {
    let mut words = line.split_whitespace();
    if words.next() != Some("nameserver") {
        return false;
    }
    match words
        .next()
        .map(|a| a.split('%').next().unwrap_or(a).parse::<IpAddr>())
    {
        Some(Ok(ip)) => ip.is_loopback(),
        _ => false,
    }
}

/// docker's `FilterResolvDNS`: drop loopback nameservers (they would be
/// the sandbox's own loopback) and fall back to Google's public DNS when
/// no nameserver is left.
pub(crate) fn filter_resolv_conf(host: &str) -> String {
    let mut out = String::new();
    for line in host.lines() {
        if !is_loopback_nameserver(line) {
            out.push_str(line);
            out.push('\n');
        }
    }
    let has_nameserver = out
        .lines()
        .any(|l| l.split_whitespace().next() == Some("nameserver"));
    if !has_nameserver {
        out.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
    out
}

/// The sandbox's resolv.conf. With the host's network the host's file is
/// used as it is (a loopback resolver is reachable there; BuildKit does
/// the same); in a new network namespace it is filtered.
pub(crate) fn resolv_conf(spec: &ResolvConf, network: Network, host_file: &str) -> String {
    match spec {
        ResolvConf::Contents(s) => s.clone(),
        ResolvConf::Host => match network {
            Network::Host if !host_file.trim().is_empty() => host_file.to_owned(),
            _ => filter_resolv_conf(host_file),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_has_localhost_hostname_and_extras() {
        let h = hosts("box", &[("db".into(), "10.0.0.2".parse().expect("ip"))]);
        assert_eq!(
            h,
            "127.0.0.1\tlocalhost box\n::1\tlocalhost ip6-localhost ip6-loopback\n10.0.0.2\tdb\n"
        );
    }

    #[test]
    fn loopback_nameservers_are_filtered() {
        let f = filter_resolv_conf(
            "nameserver 127.0.0.53\noptions edns0\nnameserver ::1\nnameserver 10.1.1.1\n",
        );
        assert_eq!(f, "options edns0\nnameserver 10.1.1.1\n");
        let f = filter_resolv_conf("search lan\nnameserver 127.0.0.53\n");
        assert_eq!(f, "search lan\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n");
        assert_eq!(
            resolv_conf(&ResolvConf::Host, Network::Host, "nameserver 127.0.0.53\n"),
            "nameserver 127.0.0.53\n"
        );
        assert_eq!(
            resolv_conf(&ResolvConf::Host, Network::None, "nameserver 127.0.0.53\n"),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
    }
}
