//! `--format` and `--filter` as docker's CLI reads them, for the listing commands.
//!
//! A format is `table` (the command's columns), `json` (one object per line), `table`
//! followed by a template (a table whose header names the fields), or a template alone
//! (one rendered line per row, no header). Templates are the subset of Go's
//! `text/template` scripts use with docker: `{{.Field}}`, `{{.A.B}}`, `{{json .}}`,
//! `{{json .Field}}`, `{{upper .X}}`, `{{lower .X}}`, `{{title .X}}`,
//! `{{index .Map "key"}}`, `{{join .List ", "}}`; `\t` and `\n` in the text are a tab and
//! a newline, as docker's formatter replaces them.
//!
//! Filters are `KEY=VALUE` pairs: values of one key are alternatives, different keys
//! must all match (docker's `filters.Args`).

use std::collections::BTreeMap;

use serde_json::Value;

use super::human::{go_json, table};

/// How a listing prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// The command's own columns, or these when a template is given.
    Table(Option<String>),
    /// One JSON object per row.
    Json,
    /// One rendered template per row.
    Template(String),
}

impl Format {
    pub fn parse(format: Option<&str>) -> Format {
        let Some(f) = format else {
            return Format::Table(None);
        };
        let f = f.trim();
        if f == "json" || f == "{{json .}}" {
            return Format::Json;
        }
        match f.strip_prefix("table") {
            Some("") => Format::Table(None),
            Some(rest) if rest.starts_with(char::is_whitespace) => {
                Format::Table(Some(unescape(rest.trim())))
            }
            _ => Format::Template(unescape(f)),
        }
    }

    /// Prints `rows` (docker's JSON objects of the listing) in this format; `columns`
    /// are the default table's (header, field) pairs, `headers` what each field is
    /// called in a table header.
    pub fn render(
        &self,
        rows: &[Value],
        columns: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Result<String, String> {
        match self {
            Format::Json => Ok(rows.iter().map(|r| go_json(r.to_string()) + "\n").collect()),
            Format::Template(t) => {
                let mut out = String::new();
                for r in rows {
                    out.push_str(&render(t, r)?);
                    out.push('\n');
                }
                Ok(out)
            }
            Format::Table(None) => {
                let mut t = vec![columns.iter().map(|(h, _)| (*h).to_owned()).collect()];
                for r in rows {
                    t.push(
                        columns
                            .iter()
                            .map(|(_, f)| text(r.get(*f).unwrap_or(&Value::Null)))
                            .collect(),
                    );
                }
                Ok(table(&t))
            }
            Format::Table(Some(template)) => {
                let names: BTreeMap<&str, &str> = headers.iter().copied().collect();
                let header = render_header(template, &names);
                let mut t = vec![cells(&header)];
                for r in rows {
                    t.push(cells(&render(template, r)?));
                }
                Ok(table(&t))
            }
        }
    }
}

fn cells(line: &str) -> Vec<String> {
    line.split('\t').map(str::to_owned).collect()
}

fn unescape(s: &str) -> String {
    s.replace("\\t", "\t").replace("\\n", "\n")
}

/// A template's header line: each action becomes its field's header (the field's name
/// in capitals when the command has none for it), as docker's table headers.
fn render_header(template: &str, names: &BTreeMap<&str, &str>) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let action = after[..end].trim();
        let field = action
            .split_whitespace()
            .find_map(|w| w.strip_prefix('.'))
            .unwrap_or(action);
        let field = field.split('.').next().unwrap_or(field);
        match names.get(field) {
            Some(h) => out.push_str(h),
            None => out.push_str(&field.to_uppercase()),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// A value as `text/template` prints it: strings bare, `<no value>` for missing ones,
/// lists as `[a b]`, the rest as JSON.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<no value>".to_owned(),
        Value::Array(a) => {
            let items: Vec<String> = a
                .iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                .collect();
            format!("[{}]", items.join(" "))
        }
        Value::Object(m) => {
            let items: Vec<String> = m.iter().map(|(k, x)| format!("{k}:{}", text(x))).collect();
            format!("map[{}]", items.join(" "))
        }
        other => other.to_string(),
    }
}

/// `{{.A.B}}`, `{{json .A}}` and docker's template functions over `v`; text outside
/// `{{ }}` is kept.
pub fn render(template: &str, v: &Value) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("template: unclosed action in {template:?}"))?;
        let action = after[..end].trim();
        out.push_str(&action_value(action, v)?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The words of an action: `.Path`, bare function names and `"quoted"` arguments.
fn words(action: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = action.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('n') => s.push('\n'),
                        Some('t') => s.push('\t'),
                        Some(o) => s.push(o),
                        None => {
                            return Err(format!(
                                "template: unterminated quoted string in {{{{{action}}}}}"
                            ))
                        }
                    },
                    Some(o) => s.push(o),
                    None => {
                        return Err(format!(
                            "template: unterminated quoted string in {{{{{action}}}}}"
                        ))
                    }
                }
            }
            out.push(format!("\"{s}"));
        } else {
            let mut w = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                w.push(c);
                chars.next();
            }
            out.push(w);
        }
    }
    Ok(out)
}

fn lookup<'a>(path: &str, v: &'a Value, action: &str) -> Result<&'a Value, String> {
    let path = path
        .strip_prefix('.')
        .ok_or_else(|| format!("template: unsupported action {{{{{action}}}}}"))?;
    let mut cur = v;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        cur = cur
            .get(part)
            .ok_or_else(|| format!("template: can't evaluate field {part} in {{{{{action}}}}}"))?;
    }
    Ok(cur)
}

fn action_value(action: &str, v: &Value) -> Result<String, String> {
    let w = words(action)?;
    let arg = |i: usize| -> Result<&Value, String> {
        let word = w
            .get(i)
            .ok_or_else(|| format!("template: missing argument in {{{{{action}}}}}"))?;
        lookup(word, v, action)
    };
    let literal = |i: usize| -> Result<String, String> {
        w.get(i)
            .and_then(|s| s.strip_prefix('"'))
            .map(str::to_owned)
            .ok_or_else(|| format!("template: expected a quoted string in {{{{{action}}}}}"))
    };
    match w.first().map(String::as_str) {
        Some("json") => Ok(go_json(arg(1)?.to_string())),
        Some("upper") => Ok(text(arg(1)?).to_uppercase()),
        Some("lower") => Ok(text(arg(1)?).to_lowercase()),
        Some("title") => {
            let s = text(arg(1)?);
            let mut c = s.chars();
            Ok(c.next()
                .map_or_else(String::new, |f| f.to_uppercase().chain(c).collect()))
        }
        Some("index") => {
            let key = literal(2)?;
            Ok(arg(1)?.get(&key).map_or_else(String::new, text))
        }
        Some("join") => {
            let sep = literal(2)?;
            let items: Vec<String> = match arg(1)? {
                Value::Array(a) => a.iter().map(text).collect(),
                other => vec![text(other)],
            };
            Ok(items.join(&sep))
        }
        Some(p) if p.starts_with('.') => Ok(text(lookup(p, v, action)?)),
        _ => Err(format!("template: unsupported action {{{{{action}}}}}")),
    }
}

/// `--filter KEY=VALUE` pairs, grouped by key.
#[derive(Debug, Default)]
pub struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    /// Parses the pairs, refusing keys not in `known` with docker's message.
    pub fn parse(pairs: &[String], known: &[&str]) -> Result<Filters, String> {
        let mut f = Filters::default();
        for p in pairs {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| format!("bad format of filter (expected name=value): {p}"))?;
            let k = k.trim().to_lowercase();
            if !known.contains(&k.as_str()) {
                return Err(format!("invalid filter '{k}'"));
            }
            f.0.entry(k).or_default().push(v.trim().to_owned());
        }
        Ok(f)
    }

    /// The values given for `key` (empty when none was).
    pub fn get(&self, key: &str) -> &[String] {
        self.0.get(key).map_or(&[], Vec::as_slice)
    }

    /// Whether `key` passes: not filtered, or one of its values satisfies `ok`.
    pub fn allows(&self, key: &str, ok: impl Fn(&str) -> bool) -> bool {
        let values = self.get(key);
        values.is_empty() || values.iter().any(|v| ok(v))
    }
}

/// docker's `label=KEY` / `label=KEY=VALUE` filter over a label map.
pub fn label_matches(filter: &str, labels: &BTreeMap<String, String>) -> bool {
    match filter.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|l| l == v),
        None => labels.contains_key(filter),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates() {
        let v = json!({"Id": "sha256:abc", "Config": {"Cmd": ["sh"], "User": ""}, "Size": 5,
            "Labels": {"a": "b"}, "Names": ["x", "y"], "Repository": "app"});
        assert_eq!(render("{{.Id}}", &v).expect("id"), "sha256:abc");
        assert_eq!(render("{{json .Config.Cmd}}", &v).expect("cmd"), "[\"sh\"]");
        assert_eq!(
            render("x={{.Size}} {{.Config.Cmd}}", &v).expect("mixed"),
            "x=5 [sh]"
        );
        assert_eq!(render("{{index .Labels \"a\"}}", &v).expect("index"), "b");
        assert_eq!(render("{{join .Names \", \"}}", &v).expect("join"), "x, y");
        assert_eq!(render("{{upper .Repository}}", &v).expect("upper"), "APP");
        assert!(render("{{.Nope}}", &v).is_err());
        assert!(render("{{.Id", &v).is_err());
    }

    #[test]
    fn formats_and_tables() {
        assert_eq!(Format::parse(None), Format::Table(None));
        assert_eq!(Format::parse(Some("json")), Format::Json);
        assert_eq!(
            Format::parse(Some("table {{.ID}}\\t{{.Tag}}")),
            Format::Table(Some("{{.ID}}\t{{.Tag}}".into()))
        );
        assert_eq!(
            Format::parse(Some("{{.ID}}")),
            Format::Template("{{.ID}}".into())
        );
        let rows = [json!({"ID": "abc", "Tag": "latest"})];
        let out = Format::parse(Some("table {{.ID}}\\t{{.Tag}}"))
            .render(&rows, &[], &[("ID", "IMAGE ID")])
            .expect("table");
        assert_eq!(out, "IMAGE ID   TAG\nabc        latest\n");
        let out = Format::parse(Some("{{.ID}}:{{.Tag}}"))
            .render(&rows, &[], &[])
            .expect("template");
        assert_eq!(out, "abc:latest\n");
    }

    #[test]
    fn filters() {
        let f = Filters::parse(
            &["dangling=true".into(), "label=a=b".into(), "label=c".into()],
            &["dangling", "label"],
        )
        .expect("parse");
        assert_eq!(f.get("dangling"), ["true"]);
        let labels: BTreeMap<String, String> = [("c".to_owned(), "x".to_owned())].into();
        assert!(f.allows("label", |l| label_matches(l, &labels)));
        assert!(f.allows("before", |_| false), "unfiltered key");
        assert!(Filters::parse(&["nope=1".into()], &["label"]).is_err());
        assert!(Filters::parse(&["novalue".into()], &["label"]).is_err());
    }
}
