//! Our own golden cases, `testdata/parse/<case>/`, for what BuildKit's vectors
//! do not cover. A case holds a `Dockerfile` and either
//! - `result` (the BuildKit-format dump) and `typed.json` (the typed
//!   instructions with their spans), or
//! - `error` (the rendered diagnostic, with its line, column and caret) for
//!   cases named `err-*`.
//!
//! `FORGE_BLESS=1` writes the expectations instead of comparing; blessed
//! files are reviewed before they are committed.

use forge_dockerfile::{dump::dump, instructions, parse, Diagnostic};
use std::path::{Path, PathBuf};

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/parse");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("testdata/parse")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("Dockerfile").is_file())
        .collect();
    cases.sort();
    cases
}

fn outcome(input: &[u8]) -> Result<(String, String), Diagnostic> {
    let ast = parse(input)?;
    let dumped = dump(&ast);
    let typed = instructions::lower(ast)?;
    let json = serde_json::to_string_pretty(&typed).expect("AST serialises") + "\n";
    Ok((dumped, json))
}

fn check(path: &Path, got: &str, failures: &mut Vec<String>) {
    if std::env::var_os("FORGE_BLESS").is_some() {
        std::fs::write(path, got).expect("bless");
        return;
    }
    match std::fs::read_to_string(path) {
        Ok(expected) if expected == got => {}
        Ok(expected) => failures.push(format!(
            "{}:\n--- expected\n{expected}--- got\n{got}",
            path.display()
        )),
        Err(e) => failures.push(format!("{}: {e}", path.display())),
    }
}

#[test]
fn golden_cases() {
    let cases = cases();
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let input = std::fs::read(case.join("Dockerfile")).expect("Dockerfile");
        let is_error_case = case
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("err-"));
        match (outcome(&input), is_error_case) {
            (Err(d), true) => {
                let rendered = d.render("Dockerfile", &String::from_utf8_lossy(&input));
                check(&case.join("error"), &rendered, &mut failures);
            }
            (Ok((result, json)), false) => {
                check(&case.join("result"), &result, &mut failures);
                check(&case.join("typed.json"), &json, &mut failures);
            }
            (Err(d), false) => failures.push(format!("{}: unexpected error {d:?}", case.display())),
            (Ok(_), true) => failures.push(format!("{}: accepted", case.display())),
        }
    }
    println!("golden: {}/{}", cases.len() - failures.len(), cases.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
