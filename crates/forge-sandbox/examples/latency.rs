//! Start-to-exit latency of `/bin/true` in a sandbox.
//!
//! ```text
//! testdata/busybox-rootfs.sh /tmp/bb
//! cargo run --release -p forge-sandbox --example latency -- /tmp/bb 200 [none]
//! ```
//!
//! Each iteration is a fresh overlay (new upper/work dirs) of ROOTFS, as a
//! build step gets. Prints min / median / mean / p90 in milliseconds.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use forge_sandbox::{Network, ProcessSpec, RootFs, SandboxSpec, Stdio};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(rootfs) = args.next().map(PathBuf::from) else {
        eprintln!("usage: latency ROOTFS [ITERATIONS] [none]");
        std::process::exit(2);
    };
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(100);
    let network = match args.next().as_deref() {
        Some("none") => Network::None,
        _ => Network::Host,
    };
    let scratch = tempfile::tempdir_in(rootfs.parent().unwrap_or(&rootfs)).expect("scratch dir");
    let mut times = Vec::with_capacity(n);
    let mut spawn_times = Vec::with_capacity(n);
    for i in 0..n {
        let upper = scratch.path().join(format!("u{i}"));
        let work = scratch.path().join(format!("w{i}"));
        std::fs::create_dir(&upper).expect("upper");
        std::fs::create_dir(&work).expect("work");
        let mut process = ProcessSpec::new(["/bin/true"]);
        process.stdin = Stdio::Null;
        let mut spec = SandboxSpec::new(
            RootFs::Overlay {
                lowerdirs: vec![rootfs.clone()],
                upperdir: Some(upper),
                workdir: Some(work),
            },
            process,
        );
        spec.state_dir = scratch.path().join("state");
        spec.network = network;
        let start = Instant::now();
        let sb = forge_sandbox::Sandbox::spawn(&spec).expect("spawn");
        let spawned = start.elapsed();
        let status = sb.wait().expect("wait");
        times.push(start.elapsed());
        spawn_times.push(spawned);
        assert!(status.success(), "{status:?}");
    }
    times.sort();
    spawn_times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mean = times.iter().sum::<Duration>() / n as u32;
    println!(
        "{n} runs of /bin/true: min {:.2} ms, median {:.2} ms, mean {:.2} ms, p90 {:.2} ms",
        ms(times[0]),
        ms(times[n / 2]),
        ms(mean),
        ms(times[n * 9 / 10])
    );
    println!(
        "  of which spawn (until execve): median {:.2} ms, p90 {:.2} ms",
        ms(spawn_times[n / 2]),
        ms(spawn_times[n * 9 / 10])
    );
}
