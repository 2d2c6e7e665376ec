//! Device nodes without the privilege to create them give a clear error. The test drops
//! CAP_MKNOD from its own thread's effective set (capabilities are per thread on Linux), so
//! it needs no second user and leaves other tests alone.

mod common;

use forge_oci::layer::{apply_layer, ApplyError, ApplyOptions};
use nix::libc;
use tar::{EntryType, Header};

const CAP_MKNOD: u32 = 27;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn capget() -> [CapData; 2] {
    let mut h = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut d = [CapData::default(); 2];
    // SAFETY: capget(2) with a v3 header reads two CapData structs into `d`.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut h as *mut CapHeader, d.as_mut_ptr()) };
    assert_eq!(r, 0, "capget");
    d
}

fn capset(d: &[CapData; 2]) {
    let mut h = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    // SAFETY: capset(2) with a v3 header reads two CapData structs; pid 0 is this thread.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut h as *mut CapHeader, d.as_ptr()) };
    assert_eq!(r, 0, "capset");
}

#[test]
fn device_without_cap_mknod_is_a_clear_error() {
    let t = common::scratch("nomknod");
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind) in [("fifo", EntryType::Fifo), ("null", EntryType::Char)] {
        let mut h = Header::new_ustar();
        h.set_path(name).expect("path");
        h.set_entry_type(kind);
        h.set_size(0);
        h.set_mode(0o666);
        h.set_device_major(1).expect("major");
        h.set_device_minor(3).expect("minor");
        h.set_cksum();
        b.append(&h, &b""[..]).expect("append");
    }
    let tar = b.into_inner().expect("tar");

    let saved = capget();
    if saved[0].effective & (1 << CAP_MKNOD) == 0 {
        eprintln!("skipping: no CAP_MKNOD to drop");
    }
    let mut dropped = saved;
    dropped[0].effective &= !(1 << CAP_MKNOD);
    capset(&dropped);
    let r = apply_layer(
        &tar[..],
        t.path(),
        &ApplyOptions {
            same_owner: Some(false),
            ..ApplyOptions::default()
        },
    );
    capset(&saved);
    let err = r.expect_err("mknod of a char device must fail");
    assert!(
        matches!(&err, ApplyError::DeviceNotPermitted { entry } if entry == "null"),
        "{err}"
    );
    assert!(err.to_string().contains("needs root"), "{err}");
    assert!(t.path().join("fifo").exists(), "fifos need no privilege");
}
