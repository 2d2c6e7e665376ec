//! `grammar/dockerfile.ebnf` stays in step with the parser: the instructions it
//! names are exactly the parser's, the flags of each `<instruction>-flag`
//! production are exactly that instruction's, and a line using each flag is
//! accepted by the parser.

use forge_dockerfile::flags::{all_flags, FlagKind};
use forge_dockerfile::instructions::KNOWN_INSTRUCTIONS;
use std::collections::BTreeSet;

fn grammar() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../grammar/dockerfile.ebnf");
    let text = std::fs::read_to_string(path).expect("grammar/dockerfile.ebnf");
    // Drop (* comments *) so prose cannot be mistaken for grammar.
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("(*") {
        out.push_str(&rest[..start]);
        rest = rest[start..]
            .find("*)")
            .map_or("", |end| &rest[start + end + 2..]);
    }
    out.push_str(rest);
    out
}

/// The productions, `name = body ;`, as (name, body).
fn productions(grammar: &str) -> Vec<(String, String)> {
    grammar
        .split(';')
        .filter_map(|p| {
            let (name, body) = p.split_once('=')?;
            let name = name.split_whitespace().last()?.to_string();
            Some((name, body.to_string()))
        })
        .collect()
}

fn quoted(body: &str) -> Vec<String> {
    body.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn grammar_names_exactly_the_parsers_instructions() {
    let prods = productions(&grammar());
    let (_, alternatives) = prods
        .iter()
        .find(|(n, _)| n == "instruction")
        .expect("an `instruction` production");
    let named: BTreeSet<String> = alternatives
        .split('|')
        .map(|a| a.trim().to_string())
        .collect();
    let known: BTreeSet<String> = KNOWN_INSTRUCTIONS.iter().map(|s| s.to_string()).collect();
    assert_eq!(named, known);
    for name in &known {
        let (_, body) = prods
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no production for {name}"));
        assert_eq!(
            quoted(body).first().map(String::as_str),
            Some(name.to_uppercase().as_str()),
            "production {name} must start with its keyword"
        );
    }
}

#[test]
fn grammar_flags_are_exactly_the_parsers_and_accepted() {
    let prods = productions(&grammar());
    let mut in_grammar = BTreeSet::new();
    for (name, body) in &prods {
        let Some(instr) = name.strip_suffix("-flag") else {
            continue;
        };
        for q in quoted(body) {
            if let Some(flag) = q.strip_prefix("--") {
                in_grammar.insert((instr.to_uppercase(), flag.trim_end_matches('=').to_string()));
            }
        }
    }
    let parser: BTreeSet<(String, String)> = all_flags()
        .into_iter()
        .map(|(i, f, _)| (i.to_string(), f.to_string()))
        .collect();
    assert_eq!(in_grammar, parser, "grammar flags vs parser flags");

    for (instr, flag, kind) in all_flags() {
        let value = match (flag, kind) {
            (_, FlagKind::Bool) => String::new(),
            ("mount", _) => "=type=tmpfs,target=/t".into(),
            ("network", _) => "=none".into(),
            ("security", _) => "=insecure".into(),
            ("retries", _) => "=3".into(),
            ("interval" | "timeout" | "start-period" | "start-interval", _) => "=1s".into(),
            _ => "=x".into(),
        };
        let rest = match instr {
            "FROM" => "busybox",
            "HEALTHCHECK" => "CMD true",
            "RUN" => "true",
            _ => "src /dst",
        };
        let line = format!("FROM busybox\n{instr} --{flag}{value} {rest}\n");
        forge_dockerfile::parse_dockerfile(line.as_bytes())
            .unwrap_or_else(|d| panic!("{line:?} rejected: {}", d.message));
    }
}
