//! "Did you mean" for unknown keys.

use crate::KNOWN_KEYS;

/// The known key that `unknown` is most likely a misspelling of, if any:
/// the same word in another case, a prefix of at least three letters
/// (`mem`), or at most two edits away (`scael`, `comand`).
pub(crate) fn closest_known_key(unknown: &str) -> Option<&'static str> {
    let lowercase = unknown.to_lowercase();
    KNOWN_KEYS
        .iter()
        .filter_map(|&known| {
            let distance = levenshtein(&lowercase, known);
            let is_prefix = lowercase.len() >= 3 && known.starts_with(lowercase.as_str());
            (distance <= 2 || is_prefix).then_some((distance, known))
        })
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, known)| known)
}

/// The number of single-character insertions, deletions and substitutions
/// that turn `a` into `b`.
pub(crate) fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    // previous[j] is the distance between the first i-1 characters of `a`
    // and the first j characters of `b`; one row is all we need to keep.
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            let deletion = previous[j + 1] + 1;
            let insertion = current[j] + 1;
            current[j + 1] = substitution.min(deletion).min(insertion);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levenshtein_distances() {
        for (a, b, expected) in [
            ("", "", 0),
            ("", "abc", 3),
            ("abc", "", 3),
            ("scale", "scale", 0),
            ("scael", "scale", 2),
            ("comand", "command", 1),
            ("kitten", "sitting", 3),
            ("memroy", "memory", 2),
        ] {
            assert_eq!(levenshtein(a, b), expected, "{a} -> {b}");
        }
    }
}
