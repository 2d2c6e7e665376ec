//! Image archives (oci-archive, docker-archive, compressed or not) on arbitrary bytes:
//! `read_archive` must return an error or the images it found, never panic; every blob it
//! kept must hash to its name, and every image it returns must have its config and layers
//! among them.
#![no_main]

use forge_oci::archive::read_archive;
use forge_oci::image::descriptor_digest;
use forge_oci::{Digest, MemoryBlobs};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut blobs = MemoryBlobs::new();
    let Ok(loaded) = read_archive(data, &mut blobs) else {
        return;
    };
    for (digest, bytes) in &blobs.blobs {
        if digest.algorithm() == forge_oci::Algorithm::Sha256 {
            assert_eq!(&Digest::sha256_of(bytes), digest);
        }
    }
    for image in &loaded.images {
        for d in std::iter::once(&image.config).chain(&image.layers) {
            let digest = descriptor_digest(d).expect("a returned descriptor's digest");
            assert!(blobs.get(&digest).is_some(), "{digest} named but not kept");
        }
    }
});
