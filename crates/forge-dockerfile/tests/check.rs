//! Build checks against golden cases: every `testdata/check/<case>/Dockerfile`
//! (with its `.dockerignore` and `build-args`, when present) gives exactly
//! the warnings its `expected` lists, one `LINE RuleName` a line; a case with
//! `expected-error` also fails with that error (`# check=error=true`).
//! Then the exact message of every rule, on small inline Dockerfiles.

use forge_dockerfile::check::{self, CheckOptions, CheckReport, ImageInfo};
use forge_dockerfile::{instructions, parse};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn cases_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/check")
}

fn run(dockerfile: &str, opts: &CheckOptions<'_>) -> CheckReport {
    let ast = parse(dockerfile.as_bytes()).expect("parses");
    let typed = instructions::lower(ast.clone()).expect("lowers");
    check::check(&ast, &typed, opts).expect("check options are valid")
}

fn run_case(dir: &Path) -> CheckReport {
    let dockerfile = std::fs::read_to_string(dir.join("Dockerfile")).expect("Dockerfile");
    let dockerignore = std::fs::read_to_string(dir.join(".dockerignore"))
        .map(|t| forge_dockerfile::dockerignore::read(&t))
        .unwrap_or_default();
    let build_args: BTreeMap<String, String> = std::fs::read_to_string(dir.join("build-args"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let opts = CheckOptions {
        build_args,
        dockerignore,
        platform: Some("linux/amd64".into()),
        images: None,
    };
    run(&dockerfile, &opts)
}

fn sorted(lines: impl IntoIterator<Item = (u32, String)>) -> Vec<(u32, String)> {
    let mut v: Vec<_> = lines.into_iter().collect();
    v.sort();
    v
}

#[test]
fn golden_cases() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("testdata/check")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 25, "only {} cases", dirs.len());
    let mut failures = Vec::new();
    for dir in &dirs {
        let expected_text = std::fs::read_to_string(dir.join("expected")).expect("expected");
        let expected = sorted(expected_text.lines().filter(|l| !l.is_empty()).map(|l| {
            let (line, rule) = l.split_once(' ').expect("LINE Rule");
            (line.parse().expect("line number"), rule.to_string())
        }));
        let report = run_case(dir);
        let got = sorted(
            report
                .warnings
                .iter()
                .map(|w| (w.span.start.line, w.rule.to_string())),
        );
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        if got != expected {
            let details: Vec<String> = report
                .warnings
                .iter()
                .map(|w| format!("  {} {}: {}", w.span.start.line, w.rule, w.message))
                .collect();
            failures.push(format!(
                "{name}: expected {expected:?}\n  got {got:?}\n{}",
                details.join("\n")
            ));
        }
        let expected_error = std::fs::read_to_string(dir.join("expected-error"))
            .ok()
            .map(|e| e.trim_end().to_string());
        if report.error() != expected_error {
            failures.push(format!(
                "{name}: error {:?}, expected {expected_error:?}",
                report.error()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The messages of the warnings, sorted by line.
fn messages(dockerfile: &str) -> Vec<String> {
    let opts = CheckOptions {
        platform: Some("linux/amd64".into()),
        ..CheckOptions::default()
    };
    run(dockerfile, &opts)
        .warnings
        .into_iter()
        .map(|w| format!("{}: {}", w.rule, w.message))
        .collect()
}

#[test]
fn stage_and_casing_messages() {
    assert_eq!(
        messages("FROM alpine as Build\nrun true\n"),
        [
            "StageNameCasing: Stage name 'Build' should be lowercase",
            "FromAsCasing: 'as' and 'FROM' keywords' casing do not match",
            "ConsistentInstructionCasing: Command 'run' should match the case of the command majority (uppercase)",
        ]
    );
    assert_eq!(
        messages("FROM a AS x\nFROM b AS x\nFROM c AS context\n"),
        [
            "DuplicateStageName: Duplicate stage name \"x\", stage names should be unique",
            "ReservedStageName: Stage name should not use the same name as reserved stage \"context\"",
        ]
    );
}

#[test]
fn instruction_messages() {
    assert_eq!(
        messages("FROM alpine\nMAINTAINER me\nENV a b\nLABEL k v\nWORKDIR rel\nCMD x\nCMD [\"y\"]\n"),
        [
            "MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label",
            "LegacyKeyValueFormat: \"ENV key=value\" should be used instead of legacy \"ENV key value\" format",
            "LegacyKeyValueFormat: \"LABEL key=value\" should be used instead of legacy \"LABEL key value\" format",
            "WorkdirRelativePath: Relative workdir \"rel\" can have unexpected results if the base image changes",
            "JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals",
            "MultipleInstructionsDisallowed: Multiple CMD instructions should not be used in the same stage because only the last one will be used",
        ]
    );
    assert_eq!(
        messages("FROM alpine\nARG API_TOKEN\nEXPOSE 80/UDP 1.2.3.4:80:80\n"),
        [
            "SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ARG \"API_TOKEN\")",
            "ExposeProtoCasing: Defined protocol '80/UDP' in EXPOSE instruction should be lowercase",
            "ExposeInvalidFormat: EXPOSE instruction should not define an IP address or host-port mapping, found '1.2.3.4:80:80'",
        ]
    );
}

#[test]
fn variable_messages_suggest_like_buildkit() {
    assert_eq!(
        messages("FROM scratch\nARG VERSION=1\nCOPY a-$VERSON /\nCOPY $ZZZ /\n"),
        [
            "UndefinedVar: Usage of undefined variable '$VERSON' (did you mean $VERSION?)",
            "UndefinedVar: Usage of undefined variable '$ZZZ'",
        ]
    );
    assert_eq!(
        messages("ARG VERSION=1\nFROM alpine:$VERSON\n"),
        [
            "InvalidDefaultArgInFrom: Default value for ARG alpine:$VERSON results in empty or invalid base image name",
            "UndefinedArgInFrom: FROM argument 'VERSON' is not declared (did you mean VERSION?)",
        ]
    );
    assert_eq!(
        messages("FROM --platform=$TARGETPLATFORM alpine\nFROM --platform=linux/arm64 alpine\n"),
        [
            "RedundantTargetPlatform: Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior",
            "FromPlatformFlagConstDisallowed: FROM --platform flag should not use constant value \"linux/arm64\"",
        ]
    );
}

#[test]
fn copy_ignored_file_message() {
    let opts = CheckOptions {
        dockerignore: forge_dockerfile::dockerignore::read("*.md\n"),
        ..CheckOptions::default()
    };
    let report = run(
        "# check=experimental=all\nFROM alpine\nADD x.md /\nCOPY y.md /\n",
        &opts,
    );
    let got: Vec<&str> = report.warnings.iter().map(|w| w.message.as_str()).collect();
    assert_eq!(
        got,
        [
            "Attempting to Add file \"x.md\" that is excluded by .dockerignore",
            "Attempting to Copy file \"y.md\" that is excluded by .dockerignore",
        ]
    );
}

#[test]
fn known_image_config_enables_undefined_var_and_platform_checks() {
    let lookup = |name: &str| -> Option<ImageInfo> {
        (name == "golang:1.22").then(|| ImageInfo {
            env: vec![("GOPATH".into(), "/go".into())],
            shell: Vec::new(),
            platform: Some("linux/arm64".into()),
        })
    };
    let opts = CheckOptions {
        platform: Some("linux/amd64".into()),
        images: Some(&lookup),
        ..CheckOptions::default()
    };
    let report = run(
        "FROM golang:1.22\nWORKDIR $GOPATH/src\nCOPY $GOPAHT /x\n\nFROM alpine\nCOPY $ANYTHING /y\n",
        &opts,
    );
    let got: Vec<String> = report
        .warnings
        .iter()
        .map(|w| format!("{} {}: {}", w.span.start.line, w.rule, w.message))
        .collect();
    assert_eq!(
        got,
        [
            "1 InvalidBaseImagePlatform: Base image golang:1.22 was pulled with platform \"linux/arm64\", expected \"linux/amd64\" for current build",
            "3 UndefinedVar: Usage of undefined variable '$GOPAHT' (did you mean $GOPATH?)",
        ]
    );
}

#[test]
fn invalid_check_directive_is_an_error() {
    let ast = parse(b"# check=skip=A;bogus\nFROM alpine\n").expect("parses");
    let typed = instructions::lower(ast.clone()).expect("lowers");
    let err = check::check(&ast, &typed, &CheckOptions::default()).expect_err("invalid");
    assert_eq!(
        err.to_string(),
        "failed to parse check options: invalid check option \"bogus\""
    );
}

#[test]
fn every_rule_has_a_golden_case() {
    let mut covered = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(cases_dir()).expect("testdata/check") {
        let path = entry.expect("entry").path().join("expected");
        if let Ok(text) = std::fs::read_to_string(path) {
            for l in text.lines() {
                if let Some((_, rule)) = l.split_once(' ') {
                    covered.insert(rule.to_string());
                }
            }
        }
    }
    // InvalidBaseImagePlatform needs an image config: covered above.
    let missing: Vec<&str> = check::RULES
        .iter()
        .map(|r| r.name)
        .filter(|n| *n != "InvalidBaseImagePlatform" && !covered.contains(*n))
        .collect();
    assert!(missing.is_empty(), "rules without a case: {missing:?}");
}
