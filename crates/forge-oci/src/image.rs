//! Image config, manifest and index.
//!
//! Manifests, indexes and descriptors are oci-spec's types, re-exported here. The image
//! config is our own serde type, [`ImageConfig`], because oci-spec's has no room for the
//! fields docker and BuildKit add inside `config` (`Healthcheck`, `OnBuild`, `Shell`,
//! `ArgsEscaped`, …) and drops fields it does not know. Ours names docker's fields and keeps
//! every unknown one in an `extra` map at each level, so reading and re-writing a config
//! loses nothing. (Loaded blobs are still copied as bytes, never re-serialised; this matters
//! when forge derives a new config from a base image's.)
//!
//! Everything forge serialises goes through [`to_json`], which sorts object keys so that the
//! same value always gives the same bytes and so the same digest (oci-spec keeps annotations
//! in a `HashMap`, whose order is random).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::digest::Digest;
use crate::media_types;

pub use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType, Platform};

/// Annotation naming a manifest inside an OCI layout's `index.json`.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's annotation with the full image name, as `docker save` (v25+) writes it.
pub const ANNOTATION_CONTAINERD_IMAGE_NAME: &str = "io.containerd.image.name";

/// An `{}` value, as docker writes for `ExposedPorts` and `Volumes` entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmptyObject {}

/// The image configuration (`application/vnd.oci.image.config.v1+json` or docker's
/// `application/vnd.docker.container.image.v1+json`; the JSON is the same).
///
/// Field order follows Go's `ocispec.Image`, so configs we write look like BuildKit's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// Creation time, RFC 3339. Kept as a string so a loaded value round-trips exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Author (MAINTAINER).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// CPU architecture in GOARCH terms (`amd64`, `arm64`).
    #[serde(default)]
    pub architecture: String,
    /// Operating system in GOOS terms (`linux`).
    #[serde(default)]
    pub os: String,
    /// OS version (Windows images).
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// OS features (Windows images).
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
    /// CPU variant (`v8` for arm64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Defaults for containers run from the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    /// The layers' uncompressed digests, base first.
    #[serde(default)]
    pub rootfs: RootFs,
    /// One entry per build step, including those that made no layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<History>>,
    /// Every other top-level field (docker's `container_config`, `docker_version`, …).
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// The `config` object: OCI's `ImageConfig` plus docker's extension fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    /// USER.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// EXPOSE: `"80/tcp": {}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, EmptyObject>>,
    /// ENV as `KEY=value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// ENTRYPOINT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// CMD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// VOLUME: `"/data": {}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, EmptyObject>>,
    /// WORKDIR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// LABEL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// STOPSIGNAL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// docker's `ArgsEscaped` (Windows shell-form quirk; BuildKit sets it for shell-form CMD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    /// HEALTHCHECK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    /// ONBUILD triggers, as source text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    /// SHELL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    /// Every other field (`Hostname`, `Image`, `AttachStdin`, … from older docker).
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// docker's `HealthcheckConfig`; durations are integer nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    /// `[]` inherit, `["NONE"]`, `["CMD", args…]`, `["CMD-SHELL", cmd]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<Vec<String>>,
    /// Time between checks, ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    /// Time before a check counts as hung, ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    /// Grace period before failures count, ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<i64>,
    /// Interval during the start period, ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<i64>,
    /// Consecutive failures before unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `rootfs`: `{"type":"layers","diff_ids":[…]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub fs_type: String,
    /// Uncompressed layer digests, base first.
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            fs_type: "layers".to_string(),
            diff_ids: Vec::new(),
        }
    }
}

/// One `history` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// When the step ran, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The instruction, e.g. `RUN /bin/sh -c make # buildkit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Comment, e.g. `buildkit.dockerfile.v0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// True when the step made no layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_layer: Option<bool>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl ImageConfig {
    /// Parses config JSON, keeping unknown fields.
    pub fn from_json(bytes: &[u8]) -> Result<ImageConfig, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Serialises deterministically (see [`to_json`]).
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        to_json(self)
    }
}

/// Serialises `value` as compact JSON with every object's keys in a fixed order: struct
/// fields in declaration order when the type has no maps, and maps sorted by key. Maps are
/// sorted by first converting to a `serde_json::Value` and rebuilding objects in key order,
/// which also covers oci-spec's `HashMap` annotations.
pub fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let v = serde_json::to_value(value)?;
    serde_json::to_vec(&sorted(v))
}

fn sorted(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// A descriptor for a blob.
pub fn descriptor(media_type: &str, digest: &Digest, size: u64) -> Descriptor {
    Descriptor::new(MediaType::from(media_type), size, digest.to_oci())
}

/// The media type string of a descriptor.
pub fn media_type_str(d: &Descriptor) -> String {
    d.media_type().to_string()
}

/// The descriptor's digest as our [`Digest`] (oci-spec accepts algorithms we do not).
pub fn descriptor_digest(d: &Descriptor) -> Result<Digest, crate::digest::DigestError> {
    Digest::from_oci(d.digest())
}

/// Builds an image manifest for a config and its layers. `docker` selects docker's v2
/// schema 2 media types (manifest and config; layer media types are taken as given).
pub fn build_manifest(
    config: Descriptor,
    layers: Vec<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
    docker: bool,
) -> ImageManifest {
    let mut b = oci_spec::image::ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::from(if docker {
            media_types::DOCKER_MANIFEST
        } else {
            media_types::OCI_MANIFEST
        }))
        .config(config)
        .layers(layers);
    if let Some(a) = annotations {
        b = b.annotations(a.into_iter().collect::<std::collections::HashMap<_, _>>());
    }
    b.build()
        .expect("every required manifest field (schemaVersion, config, layers) is set")
}

/// An RFC 3339 UTC timestamp (`1970-01-01T00:00:00Z`) for a Unix time, as Go's
/// `time.Time.MarshalJSON` writes whole seconds. Used for `created` under
/// `SOURCE_DATE_EPOCH`, without a date-time dependency.
pub fn rfc3339_utc(unix_seconds: i64) -> String {
    let days = unix_seconds.div_euclid(86_400);
    let secs = unix_seconds.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config as BuildKit writes it, with docker's extension fields and a field no spec
    /// knows, at every level.
    const BUILDKIT_CONFIG: &str = r#"{"architecture":"amd64","config":{"User":"app","ExposedPorts":{"80/tcp":{}},"Env":["PATH=/usr/bin"],"Entrypoint":["/bin/sh","-c"],"Cmd":["run"],"Volumes":{"/data":{}},"WorkingDir":"/srv","Labels":{"a":"b"},"StopSignal":"SIGTERM","ArgsEscaped":true,"Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":30000000000,"Retries":3},"OnBuild":["RUN echo hi"],"Shell":["/bin/bash","-c"],"FutureField":[1,2]},"created":"2024-01-02T03:04:05.123456789Z","history":[{"created":"2024-01-02T03:04:05Z","created_by":"RUN make # buildkit","comment":"buildkit.dockerfile.v0","x-extra":1},{"created_by":"CMD [\"run\"]","empty_layer":true}],"moby.buildkit.buildinfo.v1":"e30=","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]}}"#;

    #[test]
    fn config_keeps_docker_and_unknown_fields() {
        let c = ImageConfig::from_json(BUILDKIT_CONFIG.as_bytes()).expect("parse");
        let cc = c.config.as_ref().expect("config");
        assert_eq!(cc.args_escaped, Some(true));
        assert_eq!(
            cc.shell.as_deref(),
            Some(&["/bin/bash".to_string(), "-c".to_string()][..])
        );
        assert_eq!(cc.healthcheck.as_ref().and_then(|h| h.retries), Some(3));
        assert_eq!(cc.on_build.as_ref().map(Vec::len), Some(1));
        assert!(cc.extra.contains_key("FutureField"));
        assert!(c.extra.contains_key("moby.buildkit.buildinfo.v1"));
        let back = c.to_json().expect("serialise");
        // Same JSON value after a round trip: nothing lost, nothing added.
        let a: Value = serde_json::from_str(BUILDKIT_CONFIG).expect("json");
        let b: Value = serde_json::from_slice(&back).expect("json");
        assert_eq!(a, b);
        // And serialising is stable.
        assert_eq!(
            back,
            ImageConfig::from_json(&back)
                .expect("reparse")
                .to_json()
                .expect("ser")
        );
    }

    #[test]
    fn canonical_json_sorts_annotations() {
        let d = descriptor(media_types::OCI_CONFIG, &Digest::sha256_of(b"{}"), 2);
        let annotations: BTreeMap<String, String> = (0..20)
            .map(|i| (format!("k{i:02}"), i.to_string()))
            .collect();
        let m = build_manifest(d, vec![], Some(annotations), false);
        let first = to_json(&m).expect("json");
        for _ in 0..5 {
            // A fresh HashMap each time: iteration order differs, bytes must not.
            let again: ImageManifest = serde_json::from_slice(&first).expect("parse");
            assert_eq!(to_json(&again).expect("json"), first);
        }
    }

    #[test]
    fn rfc3339() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(-1), "1969-12-31T23:59:59Z");
    }
}
