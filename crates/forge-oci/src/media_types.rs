//! Media type strings forge reads and writes.
//!
//! OCI types are the default; docker's v2 schema 2 types are what docker-archive
//! manifests (and most registries' older images) use. Both are accepted everywhere a
//! manifest, config or layer is read.

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI uncompressed layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI gzip layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI zstd layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// Docker v2 schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list (multi-platform index).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker uncompressed layer.
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker foreign (non-distributable) gzip layer.
pub const DOCKER_LAYER_FOREIGN_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// Whether `mt` names an image manifest (OCI or docker schema 2).
pub fn is_manifest(mt: &str) -> bool {
    mt == OCI_MANIFEST || mt == DOCKER_MANIFEST
}

/// Whether `mt` names an index / manifest list.
pub fn is_index(mt: &str) -> bool {
    mt == OCI_INDEX || mt == DOCKER_MANIFEST_LIST
}

/// Whether `mt` names a layer (any compression, OCI, docker or non-distributable).
pub fn is_layer(mt: &str) -> bool {
    mt.starts_with("application/vnd.oci.image.layer.")
        || mt.starts_with("application/vnd.docker.image.rootfs.")
}

/// The docker schema 2 equivalent of an OCI media type (for docker-archive manifests).
pub fn to_docker(mt: &str) -> &str {
    match mt {
        OCI_MANIFEST => DOCKER_MANIFEST,
        OCI_INDEX => DOCKER_MANIFEST_LIST,
        OCI_CONFIG => DOCKER_CONFIG,
        OCI_LAYER_TAR => DOCKER_LAYER_TAR,
        OCI_LAYER_GZIP => DOCKER_LAYER_GZIP,
        other => other,
    }
}
