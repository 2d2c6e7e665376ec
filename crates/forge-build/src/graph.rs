//! The build graph: vertices are operations on filesystem states, each
//! identified by a digest of its operation and its inputs' digests (BuildKit's
//! LLB shape). The graph knows nothing of Dockerfiles; a vertex carries its
//! source location only as opaque data for progress and errors.

use forge_oci::{Algorithm, Digest, Hasher};
use serde::Serialize;

/// Index of a vertex in [`Graph::vertices`].
pub type VertexId = usize;

/// Where file sources of a copy or a bind mount come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The build context.
    Context,
    /// The result of another vertex (a stage, or an image).
    Vertex(VertexId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The host's network (BuildKit's default for RUN).
    Default,
    None,
    Host,
}

/// A mount of a RUN step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ExecMount {
    Bind {
        target: String,
        from: Source,
        source: String,
        readonly: bool,
    },
    Cache {
        target: String,
        id: String,
        sharing: String,
        readonly: bool,
        from: Option<Source>,
        source: String,
        uid: u32,
        gid: u32,
        mode: u32,
    },
    Tmpfs {
        target: String,
        size: Option<u64>,
    },
    /// Only the secret's id enters the graph, never its value.
    Secret {
        id: String,
        target: Option<String>,
        env: Option<String>,
        required: bool,
        uid: u32,
        gid: u32,
        mode: u32,
    },
}

/// RUN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exec {
    pub args: Vec<String>,
    /// `KEY=value`, the image's ENV plus build args in scope.
    pub env: Vec<String>,
    pub cwd: String,
    /// `user[:group]` as written; resolved in the rootfs when the step runs.
    pub user: String,
    pub network: Network,
    pub insecure: bool,
    pub mounts: Vec<ExecMount>,
}

/// COPY and ADD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Copy {
    pub from: Source,
    /// Source paths (globs allowed) relative to the source's root or, for
    /// ADD, URLs.
    pub sources: Vec<String>,
    /// Inline files from heredocs: (name, content).
    pub inline: Vec<(String, String)>,
    /// Absolute destination; a trailing `/` means a directory.
    pub dest: String,
    /// `user[:group]`, resolved against the destination's /etc files.
    pub chown: Option<String>,
    pub chmod: Option<String>,
    /// `--link`: the copy is made on an empty layer, independent of the
    /// layers below.
    pub link: bool,
    pub exclude: Vec<String>,
    pub parents: bool,
    /// ADD semantics: unpack local archives, fetch URLs.
    pub add: Option<AddOptions>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddOptions {
    pub unpack: Option<bool>,
    pub checksum: Option<String>,
    pub keep_git_dir: bool,
}

/// What a vertex does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Op {
    /// An image's filesystem, by manifest digest.
    Image {
        reference: String,
        manifest: Digest,
    },
    /// The empty filesystem.
    Scratch,
    Exec(Exec),
    Copy(Copy),
    /// WORKDIR: create the directory when missing.
    Mkdir {
        path: String,
        user: String,
    },
    /// `--link` results: the inputs' layers stacked, first at the bottom.
    Merge,
}

/// One node of the graph.
#[derive(Debug, Clone, Serialize)]
pub struct Vertex {
    pub op: Op,
    /// For Exec/Copy/Mkdir: the root filesystem first, then sources.
    pub inputs: Vec<VertexId>,
    /// sha256 over the op's canonical JSON and the inputs' digests.
    pub digest: Digest,
    /// For progress: `[build 2/5] RUN make`.
    pub name: String,
    /// The stage it belongs to.
    pub stage: usize,
    /// 1-based Dockerfile line of the instruction, if any.
    pub line: Option<u32>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Graph {
    pub vertices: Vec<Vertex>,
}

impl Graph {
    /// Adds a vertex (or returns the existing identical one), computing its
    /// digest from the op and the inputs.
    pub fn add(
        &mut self,
        op: Op,
        inputs: Vec<VertexId>,
        name: String,
        stage: usize,
        line: Option<u32>,
    ) -> VertexId {
        let mut h = Hasher::new(Algorithm::Sha256);
        // The op's JSON is canonical: struct fields in declaration order,
        // no maps.
        // Serialising plain structs and enums of strings cannot fail.
        h.update(&serde_json::to_vec(&op).expect("ops serialise"));
        for &i in &inputs {
            h.update(b"\0input:");
            h.update(self.vertices[i].digest.as_str().as_bytes());
        }
        let digest = h.finish();
        if let Some(existing) = self.vertices.iter().position(|v| v.digest == digest) {
            return existing;
        }
        self.vertices.push(Vertex {
            op,
            inputs,
            digest,
            name,
            stage,
            line,
        });
        self.vertices.len() - 1
    }

    /// The vertices `roots` depend on, themselves included, in an order where
    /// inputs come first.
    pub fn needed(&self, roots: &[VertexId]) -> Vec<VertexId> {
        let mut seen = vec![false; self.vertices.len()];
        let mut order = Vec::new();
        let mut stack: Vec<(VertexId, bool)> = roots.iter().rev().map(|&r| (r, false)).collect();
        while let Some((v, expanded)) = stack.pop() {
            if expanded {
                order.push(v);
                continue;
            }
            if seen[v] {
                continue;
            }
            seen[v] = true;
            stack.push((v, true));
            for &i in self.vertices[v].inputs.iter().rev() {
                if !seen[i] {
                    stack.push((i, false));
                }
            }
        }
        order
    }
}
