//! Errors of the legacy translation. Each names the ConfigMap key and, where it can, the line
//! inside that key's value (1-based), so a user can find the spot in `kubectl edit`.

use std::fmt;

/// One problem in the legacy ConfigMap.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// A key the legacy helper does not know (often a typo, which it ignored silently).
    #[error("{key}: unknown key{}", suggestion.map(|s| format!("; did you mean {s:?}?")).unwrap_or_default())]
    UnknownKey {
        /// The key.
        key: String,
        /// The known key it most resembles.
        suggestion: Option<&'static str>,
    },
    /// The value of a key is not valid YAML.
    #[error("{key}{}: invalid YAML: {message}", at_line(*line))]
    Yaml {
        /// The key.
        key: String,
        /// Line inside the key's value.
        line: Option<usize>,
        /// The parser's message.
        message: String,
    },
    /// A value has the wrong shape (a list where a string is expected, ...).
    #[error("{}: {message}", place(key, *line, field))]
    WrongType {
        /// The key.
        key: String,
        /// Line inside the key's value.
        line: Option<usize>,
        /// The field inside the value (`[0].domains`), or the key itself.
        field: String,
        /// What was expected.
        message: String,
    },
    /// A field the legacy format does not have (often a typo).
    #[error("{}: unknown field{}", place(key, *line, field), suggestion.map(|s| format!("; did you mean {s:?}?")).unwrap_or_default())]
    UnknownField {
        /// The key.
        key: String,
        /// Line inside the key's value.
        line: Option<usize>,
        /// The field, with its entry (`[1].instanceID`).
        field: String,
        /// The known field it most resembles.
        suggestion: Option<&'static str>,
    },
    /// A value is present but not acceptable (bad format, out of range, conflicting).
    #[error("{}: {message}", place(key, *line, field))]
    InvalidValue {
        /// The key.
        key: String,
        /// Line inside the key's value.
        line: Option<usize>,
        /// The field inside the value, or the key itself.
        field: String,
        /// What is wrong and what is allowed.
        message: String,
    },
}

fn at_line(line: Option<usize>) -> String {
    line.map(|l| format!(" (line {l})")).unwrap_or_default()
}

/// `key (line N): field`, leaving out the field when it is the key itself.
fn place(key: &str, line: Option<usize>, field: &str) -> String {
    if field == key {
        format!("{key}{}", at_line(line))
    } else {
        format!("{key}{}: {field}", at_line(line))
    }
}

impl TranslateError {
    /// A stable CamelCase reason, for Events on the ConfigMap and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            TranslateError::UnknownKey { .. } => "UnknownKey",
            TranslateError::Yaml { .. } => "InvalidYaml",
            TranslateError::WrongType { .. } => "WrongType",
            TranslateError::UnknownField { .. } => "UnknownField",
            TranslateError::InvalidValue { .. } => "InvalidValue",
        }
    }

    /// The ConfigMap key the problem is in.
    pub fn key(&self) -> &str {
        match self {
            TranslateError::UnknownKey { key, .. }
            | TranslateError::Yaml { key, .. }
            | TranslateError::WrongType { key, .. }
            | TranslateError::UnknownField { key, .. }
            | TranslateError::InvalidValue { key, .. } => key,
        }
    }

    /// The line inside the key's value, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            TranslateError::UnknownKey { .. } => None,
            TranslateError::Yaml { line, .. }
            | TranslateError::WrongType { line, .. }
            | TranslateError::UnknownField { line, .. }
            | TranslateError::InvalidValue { line, .. } => *line,
        }
    }
}

/// Every problem found in one ConfigMap; translation yields nothing when there is any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TranslateErrors(pub Vec<TranslateError>);

impl TranslateErrors {
    /// A stable reason for the whole set: the first error's.
    pub fn reason(&self) -> &'static str {
        self.0
            .first()
            .map_or("InvalidConfigMap", TranslateError::reason)
    }
}

impl fmt::Display for TranslateErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "{}", lines.join("\n"))
    }
}

impl std::error::Error for TranslateErrors {}

/// The candidate closest to `word` by edit distance, if close enough to be a likely typo.
pub(crate) fn suggest(word: &str, candidates: &[&'static str]) -> Option<&'static str> {
    let lower = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (levenshtein(&lower, &c.to_ascii_lowercase()), *c))
        .filter(|(d, c)| *d <= 3.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            let best = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
            cur.push(best);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_misses_only() {
        let keys = ["watch-namespace", "service-account", "expiring-threshold"];
        assert_eq!(suggest("watch-namespaces", &keys), Some("watch-namespace"));
        assert_eq!(
            suggest("expiringThreshold", &keys),
            Some("expiring-threshold")
        );
        assert_eq!(suggest("serviceaccount", &keys), Some("service-account"));
        assert_eq!(suggest("completely-different", &keys), None);
    }

    #[test]
    fn messages_name_key_line_and_field() {
        let e = TranslateError::InvalidValue {
            key: "acr-registry-info".into(),
            line: Some(3),
            field: "[0].instanceId".into(),
            message: "bad".into(),
        };
        assert_eq!(
            e.to_string(),
            "acr-registry-info (line 3): [0].instanceId: bad"
        );
        assert_eq!(e.reason(), "InvalidValue");
        assert_eq!(e.line(), Some(3));
        let u = TranslateError::UnknownKey {
            key: "watch-namespaces".into(),
            suggestion: Some("watch-namespace"),
        };
        assert_eq!(
            u.to_string(),
            "watch-namespaces: unknown key; did you mean \"watch-namespace\"?"
        );
    }
}
