//! `forge check` as a user runs it: docker's output on standard output,
//! exit status 1 when a check fires, 0 on a clean Dockerfile.

use std::path::PathBuf;
use std::process::{Command, Output};

fn case(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/check")
        .join(name)
}

fn forge(args: &[&str], dir: Option<&PathBuf>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_forge"));
    cmd.arg("check").args(args);
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    cmd.output().expect("forge runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn warnings_exit_one_and_print_like_docker() {
    let dir = case("maintainer-deprecated");
    let out = forge(&[], Some(&dir));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "Check complete, 1 warning has been found!\n\
         \n\
         WARNING: MaintainerDeprecated - https://docs.docker.com/go/dockerfile/rule/maintainer-deprecated/\n\
         Maintainer instruction is deprecated in favor of using label\n\
         Dockerfile:2\n\
         --------------------\n   \
         1 |     FROM alpine\n   \
         2 | >>> MAINTAINER someone@example.com\n   \
         3 |     LABEL org.opencontainers.image.authors=\"someone@example.com\"\n   \
         4 |     \n\
         --------------------\n"
    );
}

#[test]
fn context_argument_and_rule_names() {
    let dir = case("from-as-casing");
    let out = forge(&[dir.to_str().expect("utf-8 path")], None);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.starts_with("Check complete, 5 warnings have been found!\n"),
        "{text}"
    );
    assert!(text.contains("\nWARNING: FromAsCasing - https://docs.docker.com/go/dockerfile/rule/from-as-casing/\n'as' and 'FROM' keywords' casing do not match\n"), "{text}");
    assert!(
        text.contains("WARNING: ConsistentInstructionCasing"),
        "{text}"
    );
}

#[test]
fn clean_dockerfile_exits_zero() {
    let dir = case("clean");
    let out = forge(&["-f", "Dockerfile", "."], Some(&dir));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(stdout(&out), "Check complete, no warnings found.\n");
}

#[test]
fn dockerignore_of_the_context_is_read() {
    let dir = case("copy-ignored-file");
    let out = forge(&["."], Some(&dir));
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains(
        "WARNING: CopyIgnoredFile - https://docs.docker.com/go/dockerfile/rule/copy-ignored-file/\nAttempting to Copy file \"notes.md\" that is excluded by .dockerignore\n"
    ));
}

#[test]
fn error_directive_and_build_arg() {
    let out = forge(&[], Some(&case("check-error")));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(
        "ERROR: lint violation found for rules: FromAsCasing, LegacyKeyValueFormat, SecretsUsedInArgOrEnv"
    ));
    // The build arg replaces the directive.
    let out = forge(
        &["--build-arg", "BUILDKIT_DOCKERFILE_CHECK=skip=all"],
        Some(&case("from-as-casing")),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(stdout(&out), "Check complete, no warnings found.\n");
}

#[test]
fn parse_error_exits_one_with_a_diagnostic() {
    let dir = std::env::temp_dir().join(format!("forge-check-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("Dockerfile"), "FROM alpine\nRUNN make\n").expect("write");
    let out = forge(&[], Some(&dir));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("RUNN"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
}
