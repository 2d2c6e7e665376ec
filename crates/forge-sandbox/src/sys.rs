//! Thin wrappers for the system calls that neither `nix` nor `libc` wrap:
//! the new mount API (`fsopen`, `fsconfig`, `fsmount`, `move_mount`,
//! `open_tree`), `openat2`, pidfds, `close_range` and `capset`.
//!
//! Every wrapper here is async-signal-safe (one system call, no allocation),
//! so the forked children may use them. They return the raw [`Errno`] and
//! leave context to the caller.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

// <linux/mount.h>; libc does not carry these constants.
pub const FSOPEN_CLOEXEC: libc::c_uint = 0x1;
pub const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
pub const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
pub const FSMOUNT_CLOEXEC: libc::c_uint = 0x1;
pub const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
pub const OPEN_TREE_CLONE: libc::c_uint = 0x1;

fn fd_result(ret: libc::c_long) -> Result<OwnedFd, Errno> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        // SAFETY: the kernel just returned this descriptor to us; nobody else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
    }
}

fn unit_result(ret: libc::c_long) -> Result<(), Errno> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// `fsopen(2)`: a filesystem context for `fstype`, configured with [`fsconfig_string`].
pub fn fsopen(fstype: &CStr) -> Result<OwnedFd, Errno> {
    // SAFETY: plain system call with a valid NUL-terminated string.
    fd_result(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) })
}

/// `fsconfig(fd, FSCONFIG_SET_STRING, key, value, 0)`. The kernel copies at most
/// 255 bytes of `value` (`strndup_user(_value, 256)` in fs/fsopen.c).
pub fn fsconfig_string(fs: BorrowedFd<'_>, key: &CStr, value: &CStr) -> Result<(), Errno> {
    // SAFETY: valid descriptor and NUL-terminated strings.
    unit_result(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_SET_STRING,
            key.as_ptr(),
            value.as_ptr(),
            0,
        )
    })
}

/// `fsconfig(fd, FSCONFIG_CMD_CREATE, NULL, NULL, 0)`: create the superblock.
/// `fsconfig(FSCONFIG_SET_FLAG, key)`.
pub fn fsconfig_flag(fs: BorrowedFd<'_>, key: &CStr) -> Result<(), Errno> {
    // SAFETY: valid descriptor and a NUL-terminated string.
    unit_result(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_SET_FLAG,
            key.as_ptr(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    })
}

pub fn fsconfig_create(fs: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: valid descriptor.
    unit_result(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    })
}

/// `fsmount(2)`: a detached mount of the created superblock. The mount
/// belongs to no namespace until [`move_mount`] attaches it; closing the
/// descriptor before that unmounts it.
pub fn fsmount(fs: BorrowedFd<'_>, attr: libc::c_uint) -> Result<OwnedFd, Errno> {
    // SAFETY: valid descriptor.
    fd_result(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attr) })
}

/// `move_mount(from, "", AT_FDCWD, to, MOVE_MOUNT_F_EMPTY_PATH)`: attach a
/// detached mount at path `to`.
pub fn move_mount_to(from: RawFd, to: &CStr) -> Result<(), Errno> {
    // SAFETY: NUL-terminated strings; a bad descriptor is reported as EBADF.
    unit_result(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from,
            c"".as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })
}

/// `open_tree(AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE)`:
/// a detached copy of the mount tree at `path`.
pub fn open_tree_clone(path: &CStr) -> Result<OwnedFd, Errno> {
    // SAFETY: NUL-terminated string.
    fd_result(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_RECURSIVE as libc::c_uint,
        )
    })
}

/// `openat2(dirfd, path, O_PATH | O_CLOEXEC, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`:
/// resolve `path` as if `dirfd` were the root directory, so neither `..` nor
/// an absolute symlink can leave it.
pub fn open_in_root(dirfd: RawFd, path: &CStr, flags: libc::c_int) -> Result<OwnedFd, Errno> {
    // SAFETY: open_how is plain data; all-zero is valid (and required for
    // fields this version does not set).
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: `how` lives across the call and its size is passed along.
    fd_result(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd,
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    })
}

/// `pidfd_open(2)`.
pub fn pidfd_open(pid: libc::pid_t) -> Result<OwnedFd, Errno> {
    // SAFETY: plain system call. PIDFD_NONBLOCK is not needed: we only poll it.
    fd_result(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })
}

/// `pidfd_send_signal(2)`: unlike `kill(2)` it cannot hit a recycled pid.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: libc::c_int) -> Result<(), Errno> {
    // SAFETY: plain system call; info NULL means "as kill(2) would".
    unit_result(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })
}

/// `close_range(first, last, 0)`.
pub fn close_range(first: libc::c_uint, last: libc::c_uint) -> Result<(), Errno> {
    // SAFETY: closing descriptors we do not reference any more.
    unit_result(unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) })
}

/// `capset(2)` with the three 64-bit capability sets (version 3 ABI).
pub fn capset(effective: u64, permitted: u64, inheritable: u64) -> Result<(), Errno> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        Data {
            effective: effective as u32,
            permitted: permitted as u32,
            inheritable: inheritable as u32,
        },
        Data {
            effective: (effective >> 32) as u32,
            permitted: (permitted >> 32) as u32,
            inheritable: (inheritable >> 32) as u32,
        },
    ];
    // SAFETY: header and data live across the call and have the v3 layout.
    unit_result(unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) })
}

/// Write all of `buf` to `fd`, retrying on EINTR. Async-signal-safe.
pub fn write_all(fd: RawFd, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        // SAFETY: buf is a valid slice.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = Errno::last();
            if e == Errno::EINTR {
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// Read into `buf` until it is full or EOF; returns the bytes read. Async-signal-safe.
pub fn read_full(fd: RawFd, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: the pointer and length describe the unread tail of buf.
        let n = unsafe { libc::read(fd, buf[done..].as_mut_ptr().cast(), buf.len() - done) };
        if n < 0 {
            let e = Errno::last();
            if e == Errno::EINTR {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            break;
        }
        done += n as usize;
    }
    Ok(done)
}

/// Decimal digits of `n` in `buf`, for writing pids without allocating.
pub fn format_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// `/proc/self/fd/<fd>` as a NUL-terminated path in `buf`, without allocating.
/// runc mounts onto such paths so that the target, once resolved safely
/// inside the rootfs, cannot be swapped for a symlink (CVE-2021-30465).
pub fn proc_fd_path(fd: RawFd, buf: &mut [u8; 40]) -> &CStr {
    const PREFIX: &[u8] = b"/proc/self/fd/";
    let mut digits = [0u8; 20];
    let d = format_u64(fd as u64, &mut digits);
    buf[..PREFIX.len()].copy_from_slice(PREFIX);
    buf[PREFIX.len()..PREFIX.len() + d.len()].copy_from_slice(d);
    buf[PREFIX.len() + d.len()] = 0;
    match CStr::from_bytes_until_nul(&buf[..]) {
        Ok(s) => s,
        Err(_) => c"/",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers_and_fd_paths() {
        let mut b = [0u8; 20];
        assert_eq!(format_u64(0, &mut b), b"0");
        assert_eq!(format_u64(1234567, &mut b), b"1234567");
        assert_eq!(format_u64(u64::MAX, &mut b), b"18446744073709551615");
        let mut p = [0u8; 40];
        assert_eq!(proc_fd_path(17, &mut p), c"/proc/self/fd/17");
    }
}
