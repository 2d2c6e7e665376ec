//! BuildKit's own word-expansion vectors (`frontend/dockerfile/shell/envVarTest` and
//! `wordsTest`), read from `../shared/conformance/buildkit/` as BuildKit's `lex_test.go`
//! reads them. Each test runs every vector, then fails listing all that did not pass.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use forge_dockerfile::shell::{Lexer, ShellEnv};

const ENV_VAR_TEST: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/conformance/buildkit/shell-envVarTest"
);
const WORDS_TEST: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/conformance/buildkit/shell-wordsTest"
);

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("reading {path}: {err}"))
}

/// What a vector expects: a value, or `error`.
fn outcome<T: std::fmt::Debug, E: std::fmt::Display>(result: &Result<T, E>) -> String {
    match result {
        Ok(value) => format!("{value:?}"),
        Err(err) => format!("error ({err})"),
    }
}

/// Ends the test: prints the count, and fails listing every failure.
fn report(name: &str, total: usize, failed: usize, failures: &[String]) {
    let passed = total - failed;
    println!("{name}: {passed}/{total}");
    assert!(total > 0, "{name}: no vectors read");
    if !failures.is_empty() {
        let mut message = format!("{name}: {passed}/{total} passed; failing vectors:\n");
        for failure in failures {
            let _ = writeln!(message, "  {failure}");
        }
        panic!("{message}");
    }
}

/// `PLATFORM|input|expected` lines, expanded with BuildKit's test environment. The
/// environment is given both as a map and as an ordered list, as `lex_test.go` tries
/// both `ProcessWord` and `ProcessWordWithMap`.
#[test]
fn env_var_vectors() {
    let pairs = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ];
    let list: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let map: BTreeMap<String, String> = list.iter().cloned().collect();
    let envs: [(&str, &dyn ShellEnv); 2] = [("list", &list), ("map", &map)];
    let lex = Lexer::new('\\');

    let mut total = 0;
    let mut failed = 0;
    let mut failures = Vec::new();
    for (number, line) in read(ENV_VAR_TEST).lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.trim().split('|').collect();
        let [platform, input, expected] = fields[..] else {
            panic!("line {}: not PLATFORM|input|expected: {line:?}", number + 1);
        };
        let (platform, input, expected) = (platform.trim(), input.trim(), expected.trim());
        match platform {
            "A" | "U" => {}
            "W" => continue,
            other => panic!("line {}: unknown platform {other:?}", number + 1),
        }
        total += 1;
        let before = failures.len();
        for (env_name, env) in envs {
            let result = lex.process_word(input, env);
            let ok = match &result {
                Ok(value) => value == expected,
                Err(_) => expected == "error",
            };
            if !ok {
                failures.push(format!(
                    "line {} ({env_name} env): input {input:?}, expected {expected:?}, got {}",
                    number + 1,
                    outcome(&result)
                ));
            }
        }
        failed += usize::from(failures.len() > before);
    }
    report("envVar", total, failed, &failures);
}

/// `input | word,word,...` lines expanded and split with a growing environment from
/// `ENV name=value` lines (later values of a name win).
#[test]
fn words_vectors() {
    let lex = Lexer::new('\\');
    let mut list: Vec<(String, String)> = Vec::new();

    let mut total = 0;
    let mut failed = 0;
    let mut failures = Vec::new();
    for (number, line) in read(WORDS_TEST).lines().enumerate() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(assignment) = line.strip_prefix("ENV ") {
            // Leading spaces go, trailing ones stay: they are part of the value.
            let assignment = assignment.trim_start_matches(' ');
            let (name, value) = assignment.split_once('=').unwrap_or((assignment, ""));
            list.push((name.to_owned(), value.to_owned()));
            continue;
        }
        let Some((input, expected)) = line.split_once('|') else {
            panic!("line {}: not input | expected: {line:?}", number + 1);
        };
        let input = input.trim();
        let expected: Vec<&str> = expected.trim_start_matches(' ').split(',').collect();
        total += 1;
        let before = failures.len();

        let map: BTreeMap<String, String> = list.iter().cloned().collect();
        let envs: [(&str, &dyn ShellEnv); 2] = [("list", &list), ("map", &map)];
        for (env_name, env) in envs {
            let result = lex.process_words(input, env);
            let got: Vec<String> = match &result {
                Ok(words) => words.clone(),
                Err(_) => vec!["error".to_owned()],
            };
            if got != expected {
                failures.push(format!(
                    "line {} ({env_name} env): input {input:?}, expected {expected:?}, got {}",
                    number + 1,
                    outcome(&result)
                ));
            }
        }
        failed += usize::from(failures.len() > before);
    }
    report("words", total, failed, &failures);
}
