//! "Did you mean ...?" suggestions, as BuildKit's `util/suggest`: the closest
//! candidate by Levenshtein distance, if it is close enough to be a typo.

/// Edit distance in characters, counting an adjacent transposition as one
/// edit (optimal string alignment), so `RUNN`→`RUN` and `cahce`→`cache` are
/// both one typo away.
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        d[i * width] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(width) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = v;
        }
    }
    d[a.len() * width + b.len()]
}

/// The candidate closest to `value` (case-insensitively), when the distance is
/// at most a third of the value's length (at least 1, at most 2).
pub fn closest<'a>(value: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let lower = value.to_lowercase();
    let limit = (value.chars().count() / 3).clamp(1, 2);
    candidates
        .into_iter()
        .map(|c| (distance(&lower, &c.to_lowercase()), c))
        .filter(|(d, _)| *d > 0 && *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
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
    }
}
