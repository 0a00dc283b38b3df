//! "Did you mean …?" for misspelt instructions, flags and stage names.

/// The candidate closest to `word` (ignoring case) if it is close enough to
/// be a likely typo: at most two edits, and fewer than the word's length.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let w = word.to_ascii_lowercase();
    let limit = 2.min(w.chars().count().saturating_sub(1));
    candidates
        .into_iter()
        .filter(|c| !c.eq_ignore_ascii_case(word))
        .map(|c| (distance(&w, &c.to_ascii_lowercase()), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// `" (did you mean X?)"`, or nothing.
pub fn hint<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    did_you_mean(word, candidates)
        .map(|c| format!(" (did you mean {c}?)"))
        .unwrap_or_default()
}

/// Levenshtein distance with adjacent transpositions counted as one edit
/// (optimal string alignment), over characters.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Words here are short; anything long is no typo of a keyword.
    if a.len().abs_diff(b.len()) > 2 || a.len() > 64 || b.len() > 64 {
        return usize::MAX;
    }
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_words_are_suggested_far_ones_not() {
        let kws = ["RUN", "COPY", "WORKDIR", "ENTRYPOINT"];
        assert_eq!(did_you_mean("RUNN", kws), Some("RUN"));
        assert_eq!(did_you_mean("cpoy", kws), Some("COPY"));
        assert_eq!(did_you_mean("WRKDIR", kws), Some("WORKDIR"));
        assert_eq!(did_you_mean("ENTRYPIONT", kws), Some("ENTRYPOINT"));
        assert_eq!(did_you_mean("BANANA", kws), None);
        // One letter is no typo of anything.
        assert_eq!(did_you_mean("R", kws), None);
        assert_eq!(hint("biuld", ["build", "test"]), " (did you mean build?)");
        assert_eq!(hint("build", ["build"]), "");
    }
}
