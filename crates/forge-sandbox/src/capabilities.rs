//! Linux capabilities: the set a sandboxed process keeps, and how it is applied.
//!
//! The command gets [`CapSet`] in its bounding, permitted and effective sets
//! (docker's default set unless the spec says otherwise). The inheritable and
//! ambient sets are empty: docker ≥ 20.10.14 and runc stopped filling the
//! inheritable set (CVE-2022-24769), since with file-inheritable
//! capabilities it lets a non-root `execve` gain capabilities.
//!
//! For a non-root user the kernel then clears permitted and effective at
//! `execve(2)` (no file capabilities, empty ambient set), which is what
//! `docker run -u 1000` shows: `CapEff: 0`, `CapBnd` the default set.

use std::fmt;

/// One capability, by its number in `<linux/capability.h>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Capability(u8);

/// Names in kernel order; index = capability number.
const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

impl Capability {
    pub const CHOWN: Capability = Capability(0);
    pub const DAC_OVERRIDE: Capability = Capability(1);
    pub const FOWNER: Capability = Capability(3);
    pub const FSETID: Capability = Capability(4);
    pub const KILL: Capability = Capability(5);
    pub const SETGID: Capability = Capability(6);
    pub const SETUID: Capability = Capability(7);
    pub const SETPCAP: Capability = Capability(8);
    pub const NET_BIND_SERVICE: Capability = Capability(10);
    pub const NET_ADMIN: Capability = Capability(12);
    pub const NET_RAW: Capability = Capability(13);
    pub const SYS_CHROOT: Capability = Capability(18);
    pub const SYS_PTRACE: Capability = Capability(19);
    pub const SYS_ADMIN: Capability = Capability(21);
    pub const SYS_RESOURCE: Capability = Capability(24);
    pub const MKNOD: Capability = Capability(27);
    pub const AUDIT_WRITE: Capability = Capability(29);
    pub const SETFCAP: Capability = Capability(31);

    /// The capability numbered `n`, if the kernel headers we know have it.
    pub fn from_number(n: u8) -> Option<Capability> {
        ((n as usize) < NAMES.len()).then_some(Capability(n))
    }

    /// Parse `CAP_NET_ADMIN`, `NET_ADMIN` or `net_admin` (docker accepts all three).
    pub fn from_name(name: &str) -> Option<Capability> {
        let upper = name.to_ascii_uppercase();
        let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
        NAMES
            .iter()
            .position(|n| *n == bare)
            .map(|i| Capability(i as u8))
    }

    pub fn number(self) -> u8 {
        self.0
    }

    /// `CAP_…` name.
    pub fn name(self) -> String {
        format!("CAP_{}", NAMES[self.0 as usize])
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CAP_{}", NAMES[self.0 as usize])
    }
}

/// A set of capabilities as the kernel's 64-bit mask (`CapEff:` in `/proc/PID/status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CapSet(u64);

impl CapSet {
    pub const EMPTY: CapSet = CapSet(0);

    /// Docker's (and containerd's) default set: `0x00000000a80425fb`.
    pub fn docker_default() -> CapSet {
        [
            Capability::CHOWN,
            Capability::DAC_OVERRIDE,
            Capability::FSETID,
            Capability::FOWNER,
            Capability::MKNOD,
            Capability::NET_RAW,
            Capability::SETGID,
            Capability::SETUID,
            Capability::SETFCAP,
            Capability::SETPCAP,
            Capability::NET_BIND_SERVICE,
            Capability::SYS_CHROOT,
            Capability::KILL,
            Capability::AUDIT_WRITE,
        ]
        .into_iter()
        .collect()
    }

    /// Every capability this crate knows by name.
    pub fn all() -> CapSet {
        CapSet((1u64 << NAMES.len()) - 1)
    }

    pub fn from_bits(bits: u64) -> CapSet {
        CapSet(bits)
    }

    pub fn bits(self) -> u64 {
        self.0
    }

    pub fn contains(self, cap: Capability) -> bool {
        self.0 & (1 << cap.0) != 0
    }

    pub fn insert(&mut self, cap: Capability) {
        self.0 |= 1 << cap.0;
    }

    pub fn remove(&mut self, cap: Capability) {
        self.0 &= !(1 << cap.0);
    }

    pub fn iter(self) -> impl Iterator<Item = Capability> {
        (0..NAMES.len() as u8)
            .map(Capability)
            .filter(move |c| self.contains(*c))
    }
}

impl FromIterator<Capability> for CapSet {
    fn from_iter<I: IntoIterator<Item = Capability>>(iter: I) -> Self {
        let mut set = CapSet::EMPTY;
        for c in iter {
            set.insert(c);
        }
        set
    }
}

/// The highest capability number the running kernel knows
/// (`/proc/sys/kernel/cap_last_cap`); the bounding set is dropped up to it.
pub(crate) fn last_cap() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Drop every capability not in `keep` from the bounding set. Needs
/// CAP_SETPCAP, so it runs before the uid change. Async-signal-safe.
pub(crate) fn drop_bounding(keep: CapSet, last_cap: u8) -> Result<(), (u8, nix::errno::Errno)> {
    for n in 0..=last_cap {
        if n < 64 && keep.0 & (1 << n) != 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, n as libc::c_ulong, 0, 0, 0) } < 0 {
            let e = nix::errno::Errno::last();
            // EINVAL: the kernel does not know this capability; nothing to drop.
            if e != nix::errno::Errno::EINVAL {
                return Err((n, e));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_default_mask() {
        assert_eq!(CapSet::docker_default().bits(), 0x0000_0000_a804_25fb);
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(
            Capability::from_name("cap_sys_admin"),
            Some(Capability::SYS_ADMIN)
        );
        assert_eq!(Capability::from_name("NET_RAW"), Some(Capability::NET_RAW));
        assert_eq!(Capability::from_name("CAP_NOPE"), None);
        assert_eq!(Capability::SYS_ADMIN.to_string(), "CAP_SYS_ADMIN");
        assert_eq!(CapSet::docker_default().iter().count(), 14);
    }
}
