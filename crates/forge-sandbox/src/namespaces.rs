//! Namespaces: which ones a sandbox gets, and the per-namespace setup that
//! is not a mount (hostname, loopback interface).
//!
//! As runc's default spec: new mount, pid, uts, ipc and cgroup namespaces;
//! the network namespace is the host's or a new one with only `lo` up. No
//! user namespace: forge runs sandboxes as real root.

use nix::errno::Errno;
use nix::sched::CloneFlags;

use crate::spec::Network;

/// Flags for the `unshare(2)` in the intermediate process. The cgroup
/// namespace is left out on purpose: pid 1 unshares it itself once it has
/// been moved into its cgroups, so that its cgroup becomes the namespace's
/// root (runc's nsexec orders it the same way).
pub(crate) fn unshare_flags(network: Network) -> CloneFlags {
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWPID;
    if network == Network::None {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    flags
}

/// Bring `lo` up in the current (new) network namespace with
/// `SIOCGIFFLAGS`/`SIOCSIFFLAGS`, as `ip link set lo up` would. A new
/// network namespace starts with `lo` down, and many programs expect
/// 127.0.0.1 to work. Async-signal-safe.
pub(crate) fn loopback_up() -> Result<(), Errno> {
    // SAFETY: plain socket(2); the descriptor is closed below.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(Errno::last());
    }
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    let result = (|| {
        // SAFETY: SIOCGIFFLAGS fills ifr_ifru.ifru_flags of a valid ifreq.
        if unsafe { libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut ifr) } < 0 {
            return Err(Errno::last());
        }
        // SAFETY: the union member the kernel just filled.
        unsafe {
            ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        }
        // SAFETY: as above.
        if unsafe { libc::ioctl(sock, libc::SIOCSIFFLAGS, &ifr) } < 0 {
            return Err(Errno::last());
        }
        Ok(())
    })();
    // SAFETY: our own descriptor.
    unsafe { libc::close(sock) };
    result
}

/// `sethostname(2)` in the new UTS namespace. Async-signal-safe.
pub(crate) fn set_hostname(name: &[u8]) -> Result<(), Errno> {
    // SAFETY: pointer and length of a live slice.
    if unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) } < 0 {
        return Err(Errno::last());
    }
    Ok(())
}
