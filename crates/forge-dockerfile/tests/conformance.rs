//! BuildKit's parser vectors: every `testfiles/<case>/Dockerfile` dumps to its
//! `result` byte for byte; every `testfiles-negative/<case>` is rejected.

use forge_dockerfile::{dump::dump, parse};
use std::path::PathBuf;

fn conformance_dir(sub: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/conformance/buildkit")
        .join(sub)
}

fn cases(sub: &str) -> Vec<PathBuf> {
    let dir = conformance_dir(sub);
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (shared/ must sit beside the project)",
                dir.display()
            )
        })
        .map(|e| e.expect("dir entry").path())
        .collect();
    cases.sort();
    cases
}

#[test]
fn testfiles_dump_exactly_as_buildkit() {
    let cases = cases("testfiles");
    let mut failures = Vec::new();
    for case in &cases {
        let input = std::fs::read(case.join("Dockerfile")).expect("Dockerfile");
        let expected = std::fs::read_to_string(case.join("result")).expect("result");
        match parse(&input) {
            Ok(ast) => {
                let got = dump(&ast);
                if got != expected {
                    failures.push(format!(
                        "{}:\n--- expected\n{expected}--- got\n{got}",
                        case.display()
                    ));
                }
            }
            Err(e) => failures.push(format!("{}: parse error {e:?}", case.display())),
        }
    }
    println!(
        "testfiles: {}/{}",
        cases.len() - failures.len(),
        cases.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(cases.len(), 33);
}

#[test]
fn negative_testfiles_are_rejected() {
    let cases = cases("testfiles-negative");
    let mut failures = Vec::new();
    for case in &cases {
        let input = std::fs::read(case.join("Dockerfile")).expect("Dockerfile");
        match forge_dockerfile::parse_dockerfile(&input) {
            Ok(_) => failures.push(case.display().to_string()),
            Err(d) => {
                // A diagnostic always points at a real line.
                assert!(d.span.start.line >= 1, "{}: {d:?}", case.display());
                let rendered = d.render("Dockerfile", &String::from_utf8_lossy(&input));
                assert!(rendered.starts_with("Dockerfile:"), "{rendered}");
            }
        }
    }
    println!(
        "testfiles-negative: {}/{}",
        cases.len() - failures.len(),
        cases.len()
    );
    assert!(failures.is_empty(), "accepted: {failures:?}");
    assert_eq!(cases.len(), 4);
}
