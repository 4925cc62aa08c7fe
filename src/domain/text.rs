//! How values from outside (configuration, node answers) are shown in
//! messages: cut short, so that no input can make a log line long.

/// The first `max_chars` characters of `text`, with `…` when more followed.
pub fn truncate(text: &str, max_chars: usize) -> String {
    let mut chars = text.chars();
    let mut shown: String = chars.by_ref().take(max_chars).collect();
    if chars.next().is_some() {
        shown.push('…');
    }
    shown
}

/// Longest excerpt of a value [`quote`] shows.
const QUOTE_MAX_CHARS: usize = 64;

/// Quotes a value for an error message: `{:?}` escaping (so control
/// characters stay visible and the message stays on one line), cut to
/// `QUOTE_MAX_CHARS` (64) characters plus `…`.
pub fn quote(value: &str) -> String {
    format!("{:?}", truncate(value, QUOTE_MAX_CHARS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_at_a_character_boundary() {
        assert_eq!(truncate("short", 5), "short");
        assert_eq!(truncate("élan vital", 4), "élan…");
        assert_eq!(truncate("", 0), "");
        assert_eq!(quote("a\nb"), "\"a\\nb\"");
        assert_eq!(quote(&"x".repeat(65)), format!("\"{}…\"", "x".repeat(64)));
    }
}
