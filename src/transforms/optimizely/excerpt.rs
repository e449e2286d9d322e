//! Short renderings of input values for error messages.

use serde_json::Value;

/// Maximum number of characters of an input value that an error message quotes.
pub const MAX_EXCERPT_CHARS: usize = 80;

/// Renders `value` as compact JSON for an error message, shortened to [`MAX_EXCERPT_CHARS`]
/// characters with a trailing `…` when longer. Strings keep their quotes, so `"7"` and `7` differ.
pub fn excerpt(value: &Value) -> String {
    shorten(&value.to_string(), MAX_EXCERPT_CHARS)
}

/// Cuts `text` to at most `max_chars` characters, marking a cut with a trailing `…`.
pub fn shorten(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn excerpt_keeps_short_values() {
        assert_eq!(excerpt(&json!("7")), "\"7\"");
        assert_eq!(excerpt(&json!(7)), "7");
        assert_eq!(excerpt(&json!({"a": true})), "{\"a\":true}");
    }

    #[test]
    fn excerpt_cuts_long_values() {
        let long = "x".repeat(200);
        let expected = format!("\"{}…", "x".repeat(79));
        assert_eq!(excerpt(&json!(long)), expected);
    }

    #[test]
    fn shorten_respects_char_boundaries() {
        assert_eq!(shorten("ééé", 2), "éé…");
        assert_eq!(shorten("ééé", 3), "ééé");
        assert_eq!(shorten("", 3), "");
    }
}
