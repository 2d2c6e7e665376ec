//! The report channel: fixed-size messages from the sandbox's processes to
//! forge over a `SOCK_SEQPACKET` socket pair (so descriptors can ride along:
//! pid 1's pidfd, a terminal's master end).
//!
//! The children only send; forge only receives. A failed setup step is sent
//! as its [`Step`] code and the `errno`, and forge, which still has the plan
//! the step came from, turns it into a message with the path in it.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

/// Message kinds.
pub(crate) const MSG_INIT_PID: u32 = 1;
pub(crate) const MSG_FAILED: u32 = 2;
pub(crate) const MSG_STARTED: u32 = 3;
pub(crate) const MSG_EXITED: u32 = 4;
pub(crate) const MSG_SIGNALED: u32 = 5;
pub(crate) const MSG_PTY: u32 = 6;

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Msg {
    pub kind: u32,
    pub step: u32,
    pub errno: i32,
    pub value: i32,
}

impl Msg {
    pub fn failed(step: Step, errno: Errno) -> Msg {
        Msg {
            kind: MSG_FAILED,
            step: step.0,
            errno: errno as i32,
            value: 0,
        }
    }
}

/// A setup step: its kind in the high 16 bits, an index (which mount,
/// which rlimit, …) in the low 16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Step(pub u32);

impl Step {
    pub const fn new(kind: u16, index: usize) -> Step {
        Step(((kind as u32) << 16) | (index as u32 & 0xffff))
    }
    pub fn kind(self) -> u16 {
        (self.0 >> 16) as u16
    }
    pub fn index(self) -> usize {
        (self.0 & 0xffff) as usize
    }
}

/// Step kinds, in the order they happen.
pub(crate) mod step {
    // intermediate process
    pub const UNSHARE: u16 = 1;
    pub const FORK_INIT: u16 = 2;
    pub const JOIN_CGROUP: u16 = 3;
    // pid 1, before pivot_root
    pub const PARENT_ALIVE: u16 = 10;
    pub const MAKE_PRIVATE: u16 = 11;
    pub const ATTACH_ROOTFS: u16 = 12;
    pub const OPEN_ROOTFS: u16 = 13;
    pub const MOUNT_PROC: u16 = 14;
    pub const MOUNT_DEV: u16 = 15;
    pub const DEV_NODE: u16 = 16;
    pub const DEV_DIR: u16 = 17;
    pub const MOUNT_DEVPTS: u16 = 18;
    pub const MOUNT_SHM: u16 = 19;
    pub const MOUNT_MQUEUE: u16 = 20;
    pub const DEV_SYMLINK: u16 = 21;
    pub const MOUNT_SYS: u16 = 22;
    pub const MOUNTPOINT: u16 = 23;
    pub const MOUNT: u16 = 24;
    pub const REMOUNT: u16 = 25;
    pub const HOSTNAME: u16 = 26;
    pub const LOOPBACK: u16 = 27;
    pub const PIVOT_ROOT: u16 = 28;
    // pid 1, after pivot_root
    pub const MASK: u16 = 30;
    pub const READONLY_PATH: u16 = 31;
    pub const READONLY_ROOT: u16 = 32;
    pub const PTY: u16 = 33;
    pub const WAIT_CGROUP: u16 = 34;
    pub const UNSHARE_CGROUP: u16 = 35;
    pub const FORK_COMMAND: u16 = 36;
    // the command, before execve
    pub const SETSID: u16 = 40;
    pub const STDIO: u16 = 41;
    pub const RLIMIT: u16 = 42;
    pub const NO_NEW_PRIVS: u16 = 43;
    pub const BOUNDING_SET: u16 = 44;
    pub const KEEPCAPS: u16 = 45;
    pub const SETGROUPS: u16 = 46;
    pub const SETGID: u16 = 47;
    pub const SETUID: u16 = 48;
    pub const CAPSET: u16 = 49;
    pub const AMBIENT: u16 = 50;
    pub const CHDIR: u16 = 51;
    pub const EXEC: u16 = 52;
}

/// Send `msg`, with `fd` as SCM_RIGHTS when given. Async-signal-safe;
/// MSG_NOSIGNAL so that a vanished reader is an EPIPE, not a SIGPIPE.
pub(crate) fn send(sock: RawFd, msg: &Msg, fd: Option<RawFd>) -> Result<(), Errno> {
    let mut iov = libc::iovec {
        iov_base: (msg as *const Msg).cast_mut().cast(),
        iov_len: std::mem::size_of::<Msg>(),
    };
    // Room for one descriptor: CMSG_SPACE(sizeof(int)) is 24 on 64-bit Linux.
    let mut cbuf = [0u64; 4];
    // SAFETY: msghdr is plain data; all-zero is valid.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    if let Some(fd) = fd {
        // SAFETY: the control buffer is large enough and aligned for one
        // cmsghdr carrying one int, as CMSG_SPACE computes.
        unsafe {
            let space = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
            hdr.msg_control = cbuf.as_mut_ptr().cast();
            hdr.msg_controllen = space;
            let cmsg = libc::CMSG_FIRSTHDR(&hdr);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        }
    }
    loop {
        // SAFETY: hdr points at live buffers.
        let n = unsafe { libc::sendmsg(sock, &hdr, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(());
        }
        let e = Errno::last();
        if e != Errno::EINTR {
            return Err(e);
        }
    }
}

/// Receive one message and the descriptor sent with it, if any. `Ok(None)`
/// at EOF: every sending process has exited.
pub(crate) fn recv(sock: RawFd) -> Result<Option<(Msg, Option<OwnedFd>)>, Errno> {
    let mut msg = Msg::default();
    let mut iov = libc::iovec {
        iov_base: (&mut msg as *mut Msg).cast(),
        iov_len: std::mem::size_of::<Msg>(),
    };
    let mut cbuf = [0u64; 4];
    // SAFETY: msghdr is plain data; all-zero is valid.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = cbuf.as_mut_ptr().cast();
    hdr.msg_controllen = std::mem::size_of_val(&cbuf);
    let n = loop {
        // SAFETY: hdr points at live buffers; MSG_CMSG_CLOEXEC marks a
        // received descriptor close-on-exec atomically.
        let n = unsafe { libc::recvmsg(sock, &mut hdr, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = Errno::last();
        if e != Errno::EINTR {
            return Err(e);
        }
    };
    if n == 0 {
        return Ok(None);
    }
    let mut fd = None;
    // SAFETY: walking the control messages the kernel wrote into cbuf.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&hdr);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let raw = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
                fd = Some(OwnedFd::from_raw_fd(raw));
            }
            cmsg = libc::CMSG_NXTHDR(&hdr, cmsg);
        }
    }
    if n != std::mem::size_of::<Msg>() {
        return Err(Errno::EPROTO);
    }
    Ok(Some((msg, fd)))
}
