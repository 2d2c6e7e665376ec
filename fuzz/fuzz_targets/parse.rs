//! Arbitrary bytes through the whole frontend: `parse`, then `dump` and
//! `instructions::lower` on success, and `Diagnostic::render` of every error
//! and warning. Nothing may panic, hang or blow the stack, and every span must
//! point into the input.
#![no_main]

use forge_dockerfile::instructions::{self, Instruction, InstructionKind};
use forge_dockerfile::{dump, parse, Ast, Diagnostic, Node, Span};
use libfuzzer_sys::fuzz_target;

/// What every span of a parse of `source` must satisfy.
struct Bounds {
    /// Lines of the (lossily decoded) input: `\n` count + 1.
    lines: u32,
    /// Its length in bytes.
    len: usize,
}

impl Bounds {
    fn check(&self, what: &str, span: Span) {
        for pos in [span.start, span.end] {
            assert!(pos.line >= 1, "{what}: line 0 in {span:?}");
            assert!(
                pos.line <= self.lines + 1,
                "{what}: line past the end ({} lines) in {span:?}",
                self.lines
            );
            assert!(pos.column >= 1, "{what}: column 0 in {span:?}");
            assert!(
                pos.offset <= self.len,
                "{what}: offset past the end in {span:?}"
            );
        }
        assert!(
            (span.start.line, span.start.column) <= (span.end.line, span.end.column),
            "{what}: start after end in {span:?}"
        );
        assert!(
            span.start.offset <= span.end.offset,
            "{what}: start offset after end in {span:?}"
        );
    }

    fn node(&self, node: &Node) {
        self.check("keyword", node.keyword.span);
        for flag in &node.flags {
            self.check("flag", flag.span);
        }
        for arg in &node.args {
            self.check("arg", arg.span);
        }
        for heredoc in &node.heredocs {
            self.check("heredoc", heredoc.span);
        }
        self.check("node", node.span);
        self.check("args_span", node.args_span);
        if let Some(inner) = &node.onbuild {
            self.node(inner);
        }
    }

    fn ast(&self, ast: &Ast) {
        for directive in &ast.directives {
            self.check("directive", directive.span);
        }
        for warning in &ast.warnings {
            self.check("warning", warning.span);
        }
        for node in &ast.nodes {
            self.node(node);
        }
    }

    /// The spans `lower` makes itself (the rest are the nodes').
    fn instruction(&self, inst: &Instruction) {
        match &inst.kind {
            InstructionKind::Arg(defs) => {
                for def in defs {
                    self.check("arg name", def.name.span);
                    if let Some(default) = &def.default {
                        self.check("arg default", default.span);
                    }
                }
            }
            InstructionKind::Onbuild(onbuild) => self.instruction(&onbuild.trigger),
            _ => {}
        }
    }
}

fn render(diagnostic: &Diagnostic, source: &str) {
    let text = diagnostic.render("Dockerfile", source);
    assert!(text.starts_with("Dockerfile:"), "{text}");
}

fuzz_target!(|data: &[u8]| {
    let source = String::from_utf8_lossy(data);
    let bounds = Bounds {
        lines: source.matches('\n').count() as u32 + 1,
        len: source.len(),
    };
    match parse(data) {
        Ok(ast) => {
            bounds.ast(&ast);
            assert!(!ast.nodes.is_empty(), "a successful parse has instructions");
            let dumped = dump::dump(&ast);
            assert_eq!(dumped.lines().count(), ast.nodes.len(), "{dumped}");
            for warning in &ast.warnings {
                render(warning, &source);
            }
            match instructions::lower(ast) {
                Ok(dockerfile) => {
                    for inst in dockerfile.meta_args.iter().chain(
                        dockerfile
                            .stages
                            .iter()
                            .flat_map(|s| std::iter::once(&s.from).chain(s.instructions.iter())),
                    ) {
                        bounds.instruction(inst);
                    }
                }
                Err(e) => {
                    bounds.check("lower error", e.span);
                    render(&Diagnostic::from(e), &source);
                }
            }
        }
        Err(e) => {
            bounds.check("parse error", e.span);
            render(&Diagnostic::from(e), &source);
        }
    }
});
