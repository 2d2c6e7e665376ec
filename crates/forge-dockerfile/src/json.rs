//! The JSON-array form of RUN/CMD/ENTRYPOINT/SHELL/ADD/COPY/VOLUME.
//!
//! BuildKit hands the argument text to Go's `encoding/json`: text that is not
//! valid JSON falls back to shell form, while valid JSON whose elements are not
//! all strings is an error. So this recogniser accepts exactly the JSON that Go
//! accepts (any value may appear inside the array) and reports, for each
//! top-level element, its decoded string and where it sits in the text.

use nom::branch::alt;
use nom::bytes::complete::{tag, take_while, take_while1, take_while_m_n};
use nom::character::complete::{char, one_of};
use nom::combinator::{opt, recognize, value};
use nom::sequence::{pair, preceded};
use nom::{IResult, Parser};

/// One element of the top-level array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Element {
    /// A string, decoded, with its byte range (quotes included) in the input.
    Str {
        value: String,
        start: usize,
        end: usize,
    },
    /// Any other JSON value: BuildKit rejects the instruction when it sees one.
    NotString,
}

/// Parses `input` (already left-trimmed, starting with `[`) as one JSON array
/// followed only by JSON white space. `None` when it is not valid JSON.
pub(crate) fn parse_array(input: &str) -> Option<Vec<Element>> {
    let total = input.len();
    let offset = |rest: &str| total - rest.len();
    let (rest, _) = char::<&str, ()>('[').parse(input).ok()?;
    let mut elements = Vec::new();
    let (mut rest, _) = ws(rest).ok()?;
    if let Ok((after, _)) = char::<&str, ()>(']').parse(rest) {
        return trailing_ws_only(after).then_some(elements);
    }
    loop {
        let start = offset(rest);
        let (after, v) = json_value(rest).ok()?;
        let end = offset(after);
        elements.push(match v {
            Some(value) => Element::Str { value, start, end },
            None => Element::NotString,
        });
        let (after, _) = ws(after).ok()?;
        if let Ok((after, _)) = char::<&str, ()>(',').parse(after) {
            rest = ws(after).ok()?.0;
            continue;
        }
        let (after, _) = char::<&str, ()>(']').parse(after).ok()?;
        return trailing_ws_only(after).then_some(elements);
    }
}

fn trailing_ws_only(rest: &str) -> bool {
    rest.chars().all(is_json_ws)
}

fn is_json_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fn ws(i: &str) -> IResult<&str, &str, ()> {
    take_while(is_json_ws)(i)
}

/// Any JSON value; `Some(decoded)` for strings.
fn json_value(i: &str) -> IResult<&str, Option<String>, ()> {
    alt((json_string.map(Some), value(None, json_value_nested))).parse(i)
}

/// Go's `encoding/json` nesting limit (`maxNestingDepth`): deeper input is a
/// syntax error there, so here it is not JSON (and the line is shell form).
/// The top-level array counts as the first level.
const MAX_DEPTH: usize = 10_000;

/// A nested value (array, object, string, number or literal), validated but
/// not decoded. Arrays and objects are followed with an explicit stack, not
/// recursion: a line of `[[[[...` must not overflow ours.
fn json_value_nested(mut i: &str) -> IResult<&str, (), ()> {
    let fail = || nom::Err::Error(());
    // `:` after an object key.
    let member_key = |i| {
        (json_string, ws, char(':'), ws)
            .parse(i)
            .map(|(rest, _)| rest)
    };
    // The closing character of each open array or object.
    let mut open: Vec<char> = Vec::new();
    loop {
        // At the start of a value.
        if let Some(rest) = i.strip_prefix(['[', '{']) {
            let close = if i.starts_with('[') { ']' } else { '}' };
            if open.len() + 2 > MAX_DEPTH {
                return Err(fail());
            }
            i = ws(rest)?.0;
            match i.strip_prefix(close) {
                Some(rest) => i = rest,
                None => {
                    open.push(close);
                    if close == '}' {
                        i = member_key(i)?;
                    }
                    continue;
                }
            }
        } else {
            i = alt((
                value((), json_string),
                value((), json_number),
                value((), alt((tag("true"), tag("false"), tag("null")))),
            ))
            .parse(i)?
            .0;
        }
        // After a value: a `,` and the next one, or the ends of containers.
        loop {
            let Some(&close) = open.last() else {
                return Ok((i, ()));
            };
            i = ws(i)?.0;
            if let Some(rest) = i.strip_prefix(',') {
                i = ws(rest)?.0;
                if close == '}' {
                    i = member_key(i)?;
                }
                break;
            }
            i = i.strip_prefix(close).ok_or_else(fail)?;
            open.pop();
        }
    }
}

fn json_number(i: &str) -> IResult<&str, &str, ()> {
    let digits = || take_while1(|c: char| c.is_ascii_digit());
    recognize((
        opt(char('-')),
        alt((
            tag("0"),
            recognize(pair(
                one_of("123456789"),
                take_while(|c: char| c.is_ascii_digit()),
            )),
        )),
        opt(pair(char('.'), digits())),
        opt((one_of("eE"), opt(one_of("+-")), digits())),
    ))
    .parse(i)
}

fn hex4(i: &str) -> IResult<&str, u32, ()> {
    let (rest, h) = take_while_m_n(4, 4, |c: char| c.is_ascii_hexdigit()).parse(i)?;
    // Four hex digits always fit in a u32.
    let v = u32::from_str_radix(h, 16).map_err(|_| nom::Err::Error(()))?;
    Ok((rest, v))
}

/// A JSON string, decoded as Go decodes it: lone surrogates become U+FFFD,
/// raw control characters are rejected.
fn json_string(i: &str) -> IResult<&str, String, ()> {
    let (mut rest, _) = char('"').parse(i)?;
    let mut out = String::new();
    loop {
        let mut chars = rest.chars();
        match chars.next() {
            None => return Err(nom::Err::Error(())),
            Some('"') => return Ok((chars.as_str(), out)),
            Some('\\') => {
                let after = chars.as_str();
                let (after, decoded) = escape(after)?;
                out.push(decoded);
                rest = after;
            }
            Some(c) if (c as u32) < 0x20 => return Err(nom::Err::Error(())),
            Some(c) => {
                out.push(c);
                rest = chars.as_str();
            }
        }
    }
}

fn escape(i: &str) -> IResult<&str, char, ()> {
    let mut simple = alt((
        value('"', char('"')),
        value('\\', char('\\')),
        value('/', char('/')),
        value('\u{8}', char('b')),
        value('\u{c}', char('f')),
        value('\n', char('n')),
        value('\r', char('r')),
        value('\t', char('t')),
    ));
    if let Ok(r) = simple.parse(i) as IResult<&str, char, ()> {
        return Ok(r);
    }
    let (rest, first) = preceded(char('u'), hex4).parse(i)?;
    if (0xD800..0xDC00).contains(&first) {
        // A high surrogate combines with an immediately following low one.
        if let Ok((after, second)) = preceded(tag("\\u"), hex4).parse(rest) {
            if (0xDC00..0xE000).contains(&second) {
                let c = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
                return Ok((after, char::from_u32(c).unwrap_or('\u{fffd}')));
            }
        }
        return Ok((rest, '\u{fffd}'));
    }
    Ok((rest, char::from_u32(first).unwrap_or('\u{fffd}')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(input: &str) -> Option<Vec<String>> {
        parse_array(input).map(|els| {
            els.into_iter()
                .map(|e| match e {
                    Element::Str { value, .. } => value,
                    Element::NotString => "<other>".into(),
                })
                .collect()
        })
    }

    #[test]
    fn accepts_what_go_accepts() {
        assert_eq!(strings(r#"["a", "b"]"#), Some(vec!["a".into(), "b".into()]));
        assert_eq!(strings("[ ]"), Some(vec![]));
        assert_eq!(strings("[\"a\"]  \r\n"), Some(vec!["a".into()]));
        assert_eq!(strings(r#"["\u00e9\n\/"]"#), Some(vec!["é\n/".into()]));
        assert_eq!(strings(r#"["\ud83d\ude00"]"#), Some(vec!["😀".into()]));
        assert_eq!(strings(r#"["\ud83d"]"#), Some(vec!["\u{fffd}".into()]));
        assert_eq!(
            strings(r#"["a", [1, {"k": null}], -1.5e3]"#),
            Some(vec!["a".into(), "<other>".into(), "<other>".into()])
        );
    }

    #[test]
    fn rejects_what_go_rejects() {
        for bad in [
            "['a']",
            r#"["a",]"#,
            r#"["a" "b"]"#,
            r#"["a"] x"#,
            r#"["a"#,
            r#"["\x"]"#,
            "[\"a\tb\"]",
            "[01]",
            "[1.]",
            "[tru]",
        ] {
            assert_eq!(strings(bad), None, "{bad}");
        }
    }

    #[test]
    fn nesting_is_limited_as_in_go_not_by_our_stack() {
        let nested = |depth: usize, open: &str, close: &str| {
            format!("[{}1{}]", open.repeat(depth - 1), close.repeat(depth - 1))
        };
        // Go accepts 10000 levels, the top-level array included, and no more.
        for (open, close) in [("[", "]"), ("{\"k\":", "}")] {
            assert!(parse_array(&nested(MAX_DEPTH, open, close)).is_some());
            assert!(parse_array(&nested(MAX_DEPTH + 1, open, close)).is_none());
        }
        assert!(parse_array(&format!("[{}]", "[".repeat(1_000_000))).is_none());
        assert_eq!(
            strings(r#"[ [ ] , { } , {"a" : [1, {"b": "c"}], "d": []}, "e" ]"#),
            Some(vec![
                "<other>".into(),
                "<other>".into(),
                "<other>".into(),
                "e".into()
            ])
        );
        for bad in [
            r#"["a", [1,]]"#,
            r#"[{"a"}]"#,
            r#"[{"a":1,}]"#,
            r#"[{1:2}]"#,
            "[[}]",
            "[{]}",
        ] {
            assert_eq!(strings(bad), None, "{bad}");
        }
    }

    #[test]
    fn element_spans_cover_the_quotes() {
        let els = parse_array(r#"[ "ab", "c" ]"#).expect("valid");
        assert_eq!(
            els[0],
            Element::Str {
                value: "ab".into(),
                start: 2,
                end: 6
            }
        );
    }
}
