//! Python `str` semantics the reference relies on (whitespace set, strip, lower), so that
//! cleaning gives byte-identical results.

/// Python's `str.isspace()`: Unicode White_Space plus the ASCII separators U+001C..U+001F,
/// which Python counts as whitespace and Rust does not.
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()`.
pub fn strip(s: &str) -> &str {
    s.trim_matches(is_space)
}

/// Python's `str.lstrip()`.
pub fn lstrip(s: &str) -> &str {
    s.trim_start_matches(is_space)
}

/// Python's `str.lower()`. Rust's full Unicode lowering agrees with it, including the
/// contextual final sigma and `İ` -> `i` + U+0307.
pub fn lower(s: &str) -> String {
    s.to_lowercase()
}

/// `re.sub(r"\s+", " ", s).strip()` with Python's notion of whitespace.
pub fn collapse_whitespace(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_space = false;
    for c in s.chars() {
        if is_space(c) {
            if !in_space {
                out.push(' ');
            }
            in_space = true;
        } else {
            out.push(c);
            in_space = false;
        }
    }
    strip(&out).to_string()
}

/// Number of characters, which is what Python's `len(str)` counts.
pub fn char_len(s: &str) -> usize {
    s.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_includes_ascii_separators() {
        assert!(is_space('\u{1f}'));
        assert!(is_space('\u{a0}'));
        assert!(!is_space('x'));
        assert_eq!(strip("\u{1c} a b\u{3000}"), "a b");
        assert_eq!(collapse_whitespace(" a \t\n b\u{1d}c "), "a b c");
    }

    #[test]
    fn lower_matches_python_special_cases() {
        assert_eq!(lower("İ"), "i\u{307}");
        assert_eq!(lower("ΟΔΟΣ"), "οδος");
        assert_eq!(lower("ΣΑΣ ΟΔΟΣ"), "σας οδος");
    }
}
