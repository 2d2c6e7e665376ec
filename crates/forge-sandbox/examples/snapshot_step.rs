//! `/bin/true` as a build step on the store's busybox snapshot: `prepare` a writable
//! snapshot, run the sandbox on an overlay of it, drop the (empty) snapshot. Used by
//! `scripts/bench-sandbox.sh`.
//!
//! ```text
//! snapshot_step setup STORE ROOTFS     import ROOTFS as an image, print its chain ID
//! snapshot_step run STORE CHAIN [N]    N steps (default 1); with N > 1 print figures
//! ```
//!
//! With N = 1 a process is one step, so a per-invocation timer (hyperfine) compares it
//! with `crun run` / `runc run`. With N > 1 it prints the median in-process time of the
//! sandbox alone (spawn to exit, what `crun run` does) and of the whole step (prepare,
//! sandbox, drop).

use std::path::{Path, PathBuf};
use std::process::{exit, Command};
use std::time::{Duration, Instant};

use forge_oci::Digest;
use forge_sandbox::{ProcessSpec, RootFs, SandboxSpec, Stdio};
use forge_store::Store;

fn usage() -> ! {
    eprintln!("usage: snapshot_step setup STORE ROOTFS | run STORE CHAIN [N]");
    exit(2)
}

fn setup(store: &Store, rootfs: &Path) {
    let tar = Command::new("tar")
        .arg("-C")
        .arg(rootfs)
        .args(["--numeric-owner", "-cf", "-", "."])
        .output()
        .expect("run tar");
    assert!(tar.status.success(), "tar failed");
    let imported = store
        .import(&tar.stdout[..], &Default::default(), &[])
        .expect("import");
    let chains = store.unpack(&imported.image).expect("unpack");
    println!("{}", chains.last().expect("one layer"));
}

fn step(store: &Store, chain: &Digest, state: &Path) -> (Duration, Duration) {
    let start = Instant::now();
    let active = store.prepare(Some(chain)).expect("prepare");
    let mut process = ProcessSpec::new(["/bin/true"]);
    process.stdin = Stdio::Null;
    let mut spec = SandboxSpec::new(
        RootFs::Overlay {
            lowerdirs: active.lowerdirs().to_vec(),
            upperdir: Some(active.upper()),
            workdir: Some(active.work()),
        },
        process,
    );
    spec.state_dir = state.to_path_buf();
    let sandbox_start = Instant::now();
    let status = forge_sandbox::run(&spec).expect("run");
    let sandbox = sandbox_start.elapsed();
    assert!(status.success(), "{status:?}");
    drop(active);
    (sandbox, start.elapsed())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(cmd), Some(store)) = (args.first(), args.get(1)) else {
        usage()
    };
    let store = Store::open(Path::new(store)).expect("open store");
    match cmd.as_str() {
        "setup" => setup(&store, Path::new(args.get(2).unwrap_or_else(|| usage()))),
        "run" => {
            let chain = Digest::parse(args.get(2).unwrap_or_else(|| usage())).expect("chain ID");
            let n: usize = args
                .get(3)
                .map_or(1, |s| s.parse().unwrap_or_else(|_| usage()));
            let state: PathBuf = store.root().join("containers/bench-state");
            let mut sandbox = Vec::with_capacity(n);
            let mut whole = Vec::with_capacity(n);
            for _ in 0..n {
                let (s, w) = step(&store, &chain, &state);
                sandbox.push(s);
                whole.push(w);
            }
            if n > 1 {
                sandbox.sort();
                whole.sort();
                let ms = |d: Duration| d.as_secs_f64() * 1000.0;
                println!(
                    "{n} steps: sandbox (spawn to exit) median {:.2} ms, p90 {:.2} ms; \
                     whole step (prepare + sandbox + drop) median {:.2} ms, p90 {:.2} ms",
                    ms(sandbox[n / 2]),
                    ms(sandbox[n * 9 / 10]),
                    ms(whole[n / 2]),
                    ms(whole[n * 9 / 10])
                );
            }
        }
        _ => usage(),
    }
}
