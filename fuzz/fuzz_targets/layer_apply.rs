//! The layer applier on arbitrary bytes (plain, gzip or zstd tar streams): it must
//! return an error or an `Applied`, never panic, and never create anything beside its
//! target directory, whatever names, links and whiteouts the stream holds.
//!
//! Input layout: byte 0 = mode (bit 0: overlay snapshot format), then the stream.
#![no_main]

use forge_oci::layer::{apply_layer, ApplyMode, ApplyOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [mode, stream @ ..] = data else {
        return;
    };
    let jail = tempfile::tempdir().expect("tempdir");
    let target = jail.path().join("target");
    std::fs::create_dir(&target).expect("target dir");
    let opts = ApplyOptions {
        mode: if mode & 1 == 0 {
            ApplyMode::Plain
        } else {
            ApplyMode::Overlay
        },
        same_owner: Some(false),
    };
    let _ = apply_layer(stream, &target, &opts);
    let beside: Vec<_> = std::fs::read_dir(jail.path())
        .expect("read jail")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(beside, ["target"], "the applier wrote beside its target");
});
