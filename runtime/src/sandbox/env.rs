//! A process environment built by setting variables in order: a later
//! value replaces an earlier one in its first place (as Docker merges an
//! image's `Env` with `-e`). Linear in the number of variables: an image
//! may carry a hundred thousand of them.

use std::collections::HashMap;

/// Variables in first-set order, with O(1) replacement.
#[derive(Debug, Default, Clone)]
pub struct EnvList {
    pairs: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl EnvList {
    /// An empty environment.
    pub fn new() -> EnvList {
        EnvList::default()
    }

    /// Sets `key` to `value`, keeping the place of an earlier `key`.
    pub fn set(&mut self, key: &str, value: String) {
        match self.index.get(key) {
            Some(&i) => self.pairs[i].1 = value,
            None => {
                self.index.insert(key.to_string(), self.pairs.len());
                self.pairs.push((key.to_string(), value));
            }
        }
    }

    /// Whether `key` is set.
    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// The pairs, in order.
    pub fn into_pairs(self) -> Vec<(String, String)> {
        self.pairs
    }

    /// `KEY=VALUE` strings, in order.
    pub fn into_strings(self) -> Vec<String> {
        self.pairs
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_values_replace_in_the_first_place() {
        let mut e = EnvList::new();
        e.set("A", "1".into());
        e.set("B", "2".into());
        e.set("A", "3".into());
        assert!(e.contains("B") && !e.contains("C"));
        assert_eq!(e.into_strings(), ["A=3", "B=2"]);
    }
}
