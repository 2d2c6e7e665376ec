//! Inputs found by fuzzing (`fuzz/`, `cargo fuzz run parse|shell`) and the
//! hostile shapes the fuzzer is too small to reach: very long lines, very deep
//! nesting, very many heredocs. Each must finish quickly (well under a second
//! in a release build; the sizes here keep a debug build fast too) and without
//! overflowing the stack. The parser regressions that have a well-defined
//! outcome live as golden cases, `testdata/parse/fuzz-*` and `err-fuzz-*`.

use forge_dockerfile::shell::{Lexer, ShellErrorKind, MAX_EXPANSION, MAX_NESTING};
use forge_dockerfile::{dump, instructions, parse, Diagnostic};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Far above what the linear cases take, far below what a quadratic one
/// would: a failure here means a blow-up, not a slow machine.
const BUDGET: Duration = Duration::from_secs(10);

/// Runs the whole frontend on `input` as the `parse` fuzz target does and
/// returns the outcome: the dump, or the rendered error.
fn frontend(input: &str) -> Result<String, String> {
    let started = Instant::now();
    let outcome = match parse(input.as_bytes()) {
        Ok(ast) => {
            let dumped = dump::dump(&ast);
            match instructions::lower(ast) {
                Ok(_) => Ok(dumped),
                Err(e) => Err(Diagnostic::from(e).render("Dockerfile", input)),
            }
        }
        Err(e) => Err(Diagnostic::from(e).render("Dockerfile", input)),
    };
    let took = started.elapsed();
    assert!(
        took < BUDGET,
        "{took:?} for {} bytes starting {:?}",
        input.len(),
        input.chars().take(40).collect::<String>()
    );
    outcome
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The sizes. A release build (`cargo test --release`) runs the full ones:
/// 10 MiB lines, 100k heredocs, nesting levels and continuation lines, 1M
/// backslashes. A debug build runs smaller ones so that each test stays near a
/// second; the stack depths are still far past what recursion would survive.
const RELEASE: bool = !cfg!(debug_assertions);
/// The length of the long lines.
const LINE: usize = if RELEASE { 10 << 20 } else { 256 << 10 };
/// How many heredocs, nesting levels, continuation lines.
const COUNT: usize = if RELEASE { 100_000 } else { 10_000 };
/// How many backslashes on one line.
const BACKSLASHES: usize = if RELEASE { 1 << 20 } else { 256 << 10 };

#[test]
fn long_lines_of_many_words() {
    let words = |word: &str| {
        let mut line = String::with_capacity(LINE + 64);
        while line.len() < LINE {
            line.push_str(word);
            line.push(' ');
        }
        line
    };
    for input in [
        // One argument per few bytes, ASCII and not: every span needs a column.
        format!("FROM a\nEXPOSE {}\n", words("1")),
        format!("FROM a\nEXPOSE {}\n", words("é")),
        format!("FROM a\nCOPY {} /dst\n", words("ü")),
        format!("FROM a\nENV {}\n", words("k=v")),
        format!("FROM a\nLABEL {}\n", words("ключ=é")),
        format!("FROM a\nARG {}\n", words("a=€")),
        format!("FROM a\nRUN [{}\"x\"]\n", "\"é\",".repeat(LINE / 5)),
        format!(
            "FROM a\nRUN {} true\n",
            words("--mount=type=cache,target=/é")
        ),
    ] {
        let _ = frontend(&input);
    }
}

#[test]
fn long_single_words() {
    let x = "x".repeat(LINE);
    for input in [
        format!("FROM a\nRUN {x}\n"),
        format!("FROM {x}"),
        format!("FROM a\nRUN --{x} true\n"),
        format!("FROM a\nRUN --mount=type={x} true\n"),
        // A long unknown instruction (the "did you mean" search sees it whole).
        x.clone(),
        format!("FROM a\n{x} b\n"),
        // A long comment and a long directive.
        format!("# {x}\nFROM a\n"),
        format!("# syntax={x}\nFROM a\n"),
    ] {
        let _ = frontend(&input);
    }
}

#[test]
fn long_line_of_backslashes() {
    let n = BACKSLASHES;
    for count in [n, n + 1] {
        let backslashes = "\\".repeat(count);
        for input in [
            format!("FROM a\nRUN {backslashes}\n"),
            format!("FROM a\nRUN {backslashes}"),
            format!("FROM a\n{backslashes}\nRUN b\n"),
            format!("FROM a\nENV k={backslashes}\n"),
            format!("FROM a\nARG k={backslashes}\n"),
            format!("FROM a\nCOPY <<{backslashes} /\n"),
            format!("# escape=`\nFROM a\nRUN {}\n", "`".repeat(count)),
        ] {
            let _ = frontend(&input);
        }
    }
}

#[test]
fn many_continuation_lines() {
    let n = COUNT;
    let _ = frontend(&format!("FROM a\nRUN {}true\n", "a \\\n".repeat(n)));
    let _ = frontend(&format!("FROM a\nRUN a\\\n{}b\n", "# c\n\n".repeat(n)));
    let _ = frontend(&format!("FROM a\nRUN a\\\n{}", " \\\n".repeat(n)));
}

#[test]
fn many_heredocs() {
    let n = COUNT;
    let names = "<<A ".repeat(n);
    let bodies = "x\nA\n".repeat(n);
    for input in [
        format!("FROM a\nRUN {names}\n{bodies}"),
        format!("FROM a\nCOPY {names}/dst\n{bodies}"),
        format!("FROM a\nADD {names}/dst\n{bodies}"),
        format!("FROM a\nONBUILD COPY {names}/dst\n{bodies}"),
    ] {
        assert!(frontend(&input).is_ok());
    }
    // Distinct names, and all of them unterminated.
    let names: String = (0..n).map(|i| format!("<<E{i} ")).collect();
    let bodies: String = (0..n).map(|i| format!("E{i}\n")).collect();
    assert!(frontend(&format!("FROM a\nCOPY {names}/dst\n{bodies}")).is_ok());
    assert!(frontend(&format!("FROM a\nRUN {names}\n")).is_err());
}

#[test]
fn deeply_nested_expansions() {
    let n = COUNT;
    let word = format!("{}x{}", "${a:-".repeat(n), "}".repeat(n));
    let lexer = Lexer::new('\\');
    let err = lexer.process_word(&word, &env(&[])).expect_err("too deep");
    assert_eq!(err.kind, ShellErrorKind::TooDeep { limit: MAX_NESTING });
    // Inside quotes, unterminated, and with the other modifiers.
    for word in [
        format!("\"{}x{}\"", "${a:-\"".repeat(n), "\"}".repeat(n)),
        "${a:-".repeat(n),
        "${a/".repeat(n),
        format!("{}x{}", "${a#".repeat(n), "}".repeat(n)),
        format!("{}x{}", "${a:+".repeat(n), "}".repeat(n)),
    ] {
        assert!(lexer.process_word(&word, &env(&[("a", "v")])).is_err());
    }
    // In a Dockerfile the words are only lexed for heredoc names and checks.
    let _ = frontend(&format!("FROM a\nENV k={word}\nCOPY <<{word} /\n"));
}

#[test]
fn deeply_nested_json() {
    let n = COUNT;
    for input in [
        format!("FROM a\nRUN {}\n", "[".repeat(n)),
        format!("FROM a\nRUN {}{}\n", "[".repeat(n), "]".repeat(n)),
        format!("FROM a\nCMD [\"a\", {}1{}]\n", "[".repeat(n), "]".repeat(n)),
        format!(
            "FROM a\nCMD [\"a\", {}1{}]\n",
            "{\"k\":".repeat(n),
            "}".repeat(n)
        ),
    ] {
        let _ = frontend(&input);
    }
}

#[test]
fn deeply_nested_onbuild() {
    let n = COUNT;
    let _ = frontend(&format!("FROM a\n{}RUN x\n", "ONBUILD ".repeat(n)));
    let _ = frontend(&format!("FROM a\n{}", "ONBUILD ".repeat(n)));
}

#[test]
fn long_expansions() {
    let n = COUNT;
    let lexer = Lexer::new('\\');
    let value = "ab\n".repeat(n);
    let vars = env(&[("a", &value), ("b", "b")]);
    for word in [
        "$b$b$b$b".repeat(n / 4),
        "${a//?/x}".to_owned(),
        "${a//*/x}".to_owned(),
        "${a//b/$0$0}".to_owned(),
        "${a/*b/x}".to_owned(),
        "${a##*b}".to_owned(),
        "${a%%a*}".to_owned(),
        "${a%a*}".to_owned(),
        "${a#*\n}".to_owned(),
        format!("${{a//{}/x}}", "?*".repeat(100)),
        format!("${{a%%{}}}", "*a".repeat(100)),
    ] {
        let started = Instant::now();
        let _ = lexer.process_words(&word, &vars);
        assert!(
            started.elapsed() < BUDGET,
            "{:?} for {word:.40}",
            started.elapsed()
        );
    }
}

/// Every span of a parse: inside the input and not ending before it starts.
fn assert_spans_sane(input: &str) {
    let ast = parse(input.as_bytes()).expect("parses");
    let lines = input.matches('\n').count() as u32 + 1;
    let mut spans = Vec::new();
    let mut nodes: Vec<&forge_dockerfile::Node> = ast.nodes.iter().collect();
    while let Some(node) = nodes.pop() {
        spans.extend([node.keyword.span, node.span, node.args_span]);
        spans.extend(node.flags.iter().chain(&node.args).map(|a| a.span));
        spans.extend(node.heredocs.iter().map(|h| h.span));
        nodes.extend(node.onbuild.as_deref());
    }
    for span in spans {
        let (start, end) = (span.start, span.end);
        assert!(
            (start.line, start.column) <= (end.line, end.column),
            "{span:?} in {input:?}"
        );
        assert!(start.offset <= end.offset, "{span:?} in {input:?}");
        assert!(
            end.line <= lines && end.offset <= input.len(),
            "{span:?} in {input:?}"
        );
    }
}

/// Found by the `parse` target: an empty argument where two lines join (the
/// empty separator of legacy `ENV key value`, an empty argument list) ended a
/// line before it started.
#[test]
fn empty_spans_at_line_joins() {
    for input in [
        "ENV o\\\n f",
        "FROM a\nENV o\\\n f\n",
        "FROM a\nLABEL k\\\n v\n",
        "FROM a\nRUN \\\n\n",
        "FROM a\nONBUILD\\\n RUN x\n",
        "FROM a\nCOPY --from=a\\\n\n",
        "FROM a\nHEALTHCHECK \\\n CMD\\\n\n",
    ] {
        assert_spans_sane(input);
    }
}

/// Found by the `shell` target (a timeout): `${a///r}` (an empty pattern)
/// puts `r` before every character of `a`, and nesting such replacements
/// multiplies the length at every level, so this 80-byte word asked for an
/// exponential amount of text. Expansion now stops at `MAX_EXPANSION` bytes.
#[test]
fn exponential_expansion_is_cut_off() {
    let word = String::from_utf8_lossy(
        b"\xa8\xa8{${a///\xc7\xdb\xff${a///0$ /a/P0\xa8\xa8{${a///0$\xff${a//0/0$ }\xffa$\x07:$-$}}\xca}\xca}\xd0\xd0",
    );
    let value = String::from_utf8_lossy(
        b"\xc0\xfe\x84\xdb{a//\xc7\xdb\xff${a///0$ }\xff:$\xff${a///0$ \xff$$a$\x07:$\xff${a///",
    );
    let too_large = ShellErrorKind::TooLarge {
        limit: MAX_EXPANSION,
    };
    let lexer = Lexer::new('\\');
    let started = Instant::now();
    // 10 MiB, within the limit: expanded as before, only now in bounded time.
    match lexer.process_word(&word, &env(&[("a", &value)])) {
        Ok(expanded) => assert!(expanded.len() <= MAX_EXPANSION),
        Err(err) => assert_eq!(err.kind, too_large),
    }
    assert!(started.elapsed() < BUDGET);

    // The same growth, written plainly: ×11 per level.
    let deep = format!("{}x{}", "${a///".repeat(12), "}".repeat(12));
    let err = lexer
        .process_word(&deep, &env(&[("a", "0123456789")]))
        .expect_err("too large");
    assert_eq!(err.kind, too_large);
    // Shallow, as before: Go's `ReplaceAll("01", "", r)` is `r0r1r`.
    let shallow = format!("{}x{}", "${a///".repeat(3), "}".repeat(3));
    let small = env(&[("a", "01")]);
    assert_eq!(
        lexer.process_word(&shallow, &small).expect("fits"),
        "x0x1x0x0x1x1x0x1x0x0x1x0x0x1x1x0x1x1x0x1x0x0x1x1x0x1x"
    );
}

/// The other way to ask for too much: quadratic work, many copies of a long
/// value (or, in a release build, many pattern matches against it, a long
/// template of `$0`s, a long pattern). Reaching the limit takes seconds in a
/// debug build for the matching forms, so those run in release only.
#[test]
fn quadratic_expansion_is_cut_off() {
    let too_large = ShellErrorKind::TooLarge {
        limit: MAX_EXPANSION,
    };
    let lexer = Lexer::new('\\');
    let long = "v".repeat(1 << 20);
    // Templates come from variables: in the word itself `$0` would be expanded.
    let zeros = "$0".repeat(100);
    let vars = env(&[("a", &long), ("t", &zeros), ("two", "$0$0")]);
    let mut words = vec!["$a".repeat(100)];
    if RELEASE {
        words.extend([
            "${a##*}".repeat(100),
            "${a//v/$t}".to_owned(),
            format!("${{a%{}}}", "?".repeat(100)),
        ]);
    }
    for word in words {
        let started = Instant::now();
        let err = lexer.process_word(&word, &vars).expect_err("too large");
        assert_eq!(err.kind, too_large, "{word:.20}");
        assert!(started.elapsed() < BUDGET);
    }
    // Well below the limit all is as before; a lookup whose value is not
    // used costs nothing.
    let unused = "${a:+}".repeat(10_000);
    assert_eq!(lexer.process_word(&unused, &vars).expect("fits"), "");
    assert_eq!(
        lexer.process_word("$a$a", &vars).expect("fits").len(),
        2 << 20
    );
    if RELEASE {
        let two = lexer.process_word("${a//v/$two}", &vars).expect("fits");
        assert_eq!(two.len(), 2 << 20);
    }
    // The limit can be lowered (the fuzz target does).
    let mut strict = lexer;
    strict.max_expansion = 1000;
    let err = strict.process_word("$a", &vars).expect_err("too large");
    assert_eq!(err.kind, ShellErrorKind::TooLarge { limit: 1000 });
    let xs = "x".repeat(400);
    let small = env(&[("a", "v"), ("t", &xs)]);
    let err = strict
        .process_word("${a///${a///$t}}", &small)
        .expect_err("too large");
    assert_eq!(err.kind, ShellErrorKind::TooLarge { limit: 1000 });
    assert_eq!(
        strict.process_word("${a///x}", &small).expect("fits"),
        "xvx"
    );
}
