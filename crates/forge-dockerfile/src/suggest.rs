//! "Did you mean ...?" suggestions, as BuildKit's `util/suggest.Search`:
//! the candidate at the smallest Levenshtein distance, if that distance is at
//! most 2; none when the value is itself a candidate.

/// Plain Levenshtein distance in characters (no transpositions, as the Go
/// package BuildKit uses).
pub fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j + 1] + 1).min(cur[j] + 1).min(prev[j] + cost);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The closest candidate to `value` within distance 2 (the first one on a
/// tie), compared case-insensitively unless `case_sensitive`. Returned as the
/// candidate is written.
pub fn search<'a>(
    value: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    case_sensitive: bool,
) -> Option<String> {
    let fold = |s: &str| {
        if case_sensitive {
            s.to_string()
        } else {
            s.to_lowercase()
        }
    };
    let value = fold(value);
    if value.is_empty() {
        return None;
    }
    let mut best: Option<(usize, &str)> = None;
    let value_len = value.chars().count();
    for c in candidates {
        let c_folded = fold(c);
        // The distance is at least the difference in length: a candidate more
        // than 2 characters longer or shorter can never be suggested, so skip
        // the O(n·m) comparison (a 10 MB unknown word must not cost seconds).
        if c_folded.chars().count().abs_diff(value_len) > 2 {
            continue;
        }
        let d = levenshtein(&value, &c_folded);
        if d == 0 {
            return None;
        }
        if best.is_none_or(|(min, _)| d < min) {
            best = Some((d, c));
        }
    }
    best.filter(|(d, _)| *d <= 2).map(|(_, c)| c.to_string())
}

/// [`search`], case-insensitive: for instruction, flag and option names.
pub fn closest<'a>(value: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    search(value, candidates, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let names = ["RUN", "COPY", "FROM", "WORKDIR"];
        assert_eq!(closest("RUNN", names), Some("RUN".into()));
        assert_eq!(closest("COPPY", names), Some("COPY".into()));
        assert_eq!(closest("WORKDR", names), Some("WORKDIR".into()));
        assert_eq!(closest("XYZZY", names), None);
        assert_eq!(closest("cahce", ["cache", "bind"]), Some("cache".into()));
        assert_eq!(
            search("VERSON", ["PATH", "VERSION"], true),
            Some("VERSION".into())
        );
        assert_eq!(search("version", ["VERSION"], true), None);
        assert_eq!(search("FOO", ["FOO"], true), None);
    }
}
