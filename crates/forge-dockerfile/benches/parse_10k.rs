//! Benchmark, not a test: parse and type a generated 10,000-instruction
//! Dockerfile (every instruction kind, continuations, heredocs, JSON and shell
//! forms, flags). Run with `cargo bench -p forge-dockerfile --bench parse_10k`;
//! prints min and median over repeated runs. Target: median under 20 ms.

use std::time::{Duration, Instant};

fn generate(instructions: usize) -> String {
    let mut out = String::from("# syntax=docker/dockerfile:1\nARG BASE=busybox\n");
    let mut n = 1; // the ARG above (the directive is not an instruction)
    let mut i = 0;
    while n < instructions {
        let line = match i % 16 {
            0 => format!("FROM --platform=$BUILDPLATFORM ${{BASE}}:{i} AS stage{i}\n"),
            1 => format!("RUN --mount=type=cache,target=/root/.cache,id=c{i} \\\n    apt-get update && \\\n    apt-get install -y pkg{i}\n"),
            2 => format!("COPY --from=stage{i} --chown=1000:1000 --chmod=0644 src/{i}/ lib/ /app/{i}/\n"),
            3 => format!("ENV K{i}=value{i} OTHER{i}=\"quoted value {i}\" PATH=/bin:$PATH\n"),
            4 => format!("RUN <<EOF\necho heredoc {i}\nmake -j2 target{i}\nEOF\n"),
            5 => format!("CMD [\"/bin/app{i}\", \"--flag\", \"value {i}\"]\n"),
            6 => format!("LABEL org.example.n{i}=\"{i}\" version=1.{i}\n"),
            7 => format!("WORKDIR /srv/app{i}\n"),
            8 => format!("ARG V{i}=default{i} W{i}\n"),
            9 => format!("EXPOSE {}/tcp {}\n", 1000 + i % 60000, 2000 + i % 60000),
            10 => format!("ADD --checksum=sha256:{:064x} https://example.com/f{i}.tgz /opt/\n", i),
            11 => "HEALTHCHECK --interval=30s --timeout=3s --retries=3 CMD wget -q http://localhost/ || exit 1\n".to_string(),
            12 => format!("USER {}:{}\n", 1000 + i % 100, 1000 + i % 100),
            13 => format!("ONBUILD RUN echo trigger {i}\n"),
            14 => format!("VOLUME [\"/data{i}\", \"/logs{i}\"]\n"),
            _ => format!("ENTRYPOINT exec /bin/app{i} \"$@\"\n"),
        };
        out.push_str(&line);
        n += 1;
        i += 1;
    }
    out
}

fn main() {
    let text = generate(10_000);
    let ast = forge_dockerfile::parse(text.as_bytes()).expect("generated Dockerfile parses");
    assert_eq!(ast.nodes.len(), 10_000);
    forge_dockerfile::instructions::lower(ast).expect("generated Dockerfile types");
    let runs = 30;
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            let ast =
                forge_dockerfile::parse(std::hint::black_box(text.as_bytes())).expect("parses");
            let typed = forge_dockerfile::instructions::lower(ast).expect("types");
            std::hint::black_box(typed);
            start.elapsed()
        })
        .collect();
    times.sort();
    println!(
        "parse+lower of 10,000 instructions ({} bytes): min {:.2} ms, median {:.2} ms over {runs} runs",
        text.len(),
        times[0].as_secs_f64() * 1e3,
        times[runs / 2].as_secs_f64() * 1e3
    );
}
