//! Sentence splitting for long text (`split_sentence` of the reference): sentences are
//! packed greedily into chunks of at most the language's character limit, and a single
//! sentence longer than that is wrapped at spaces.
//!
//! The reference finds sentences with spaCy's rule-based "sentencizer"; this module applies
//! the same rule (a new sentence starts at the first non-punctuation token after a
//! sentence-final mark) on a light tokenization: trailing marks of a word are separate
//! tokens unless the word is a known abbreviation, an initialism ("e.g.") or ends in an
//! ellipsis, and CJK marks split wherever they occur.

use super::{char_limit, pystr};

/// Sentence-final marks (the common part of spaCy's sentencizer list).
fn is_terminal(c: char) -> bool {
    matches!(
        c,
        '!' | '.'
            | '?'
            | '։'
            | '؟'
            | '۔'
            | '।'
            | '॥'
            | '።'
            | '‼'
            | '‽'
            | '⁇'
            | '⁈'
            | '⁉'
            | '﹒'
            | '﹖'
            | '﹗'
            | '！'
            | '．'
            | '？'
            | '。'
            | '｡'
    )
}

fn is_cjk_terminal(c: char) -> bool {
    matches!(c, '。' | '！' | '？' | '｡' | '．')
}

/// Unicode punctuation, as spaCy's `is_punct` sees it (approximately).
fn is_punct(c: char) -> bool {
    c.is_ascii_punctuation() && !matches!(c, '$' | '+' | '<' | '=' | '>' | '^' | '`' | '|' | '~')
        || (!c.is_ascii() && !c.is_alphanumeric() && !c.is_whitespace() && !is_symbol_like(c))
}

fn is_symbol_like(c: char) -> bool {
    matches!(c, '€' | '£' | '¥' | '°' | '©' | '®' | '™' | '§' | '¶')
}

/// Words whose final dot belongs to the word (spaCy tokenizer exceptions, lowercased).
const ABBREVIATIONS: &[&str] = &[
    "mr.", "mrs.", "ms.", "dr.", "st.", "jr.", "sr.", "co.", "corp.", "inc.", "ltd.", "vs.", "mt.", "gen.", "gov.",
    "rep.", "sen.", "rev.", "prof.", "jan.", "feb.", "mar.", "apr.", "jun.", "jul.", "aug.", "sep.", "sept.", "oct.",
    "nov.", "dec.", "sra.", "srta.", "dra.", "ud.", "uds.",
];

/// Whether the sentence-final mark at the end of `word` is a token of its own.
fn word_ends_sentence(word: &str) -> bool {
    let trimmed = word.trim_end_matches(|c: char| is_punct(c) && !is_terminal(c));
    let Some(last) = trimmed.chars().last() else {
        return false;
    };
    if !is_terminal(last) {
        return false;
    }
    if trimmed.ends_with("...") || trimmed.ends_with('…') {
        return false;
    }
    if last == '.' {
        let lower = pystr::lower(trimmed);
        if ABBREVIATIONS.contains(&lower.as_str()) {
            return false;
        }
        // Initialisms such as "e.g." or "u.s." and single letters ("a.") stay one token.
        let body = &lower[..lower.len() - 1];
        let letters_and_dots = body.chars().all(|c| c.is_alphabetic() || c == '.');
        if letters_and_dots && (body.contains('.') || body.chars().count() == 1) {
            return false;
        }
    }
    true
}

/// Sentences of `text` in order, without surrounding whitespace.
pub fn sentences(text: &str) -> Vec<String> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut out = Vec::new();
    let mut start = 0;
    let mut seen_end = false;
    let mut word_start = 0;
    for (i, &(pos, c)) in chars.iter().enumerate() {
        if pystr::is_space(c) {
            continue;
        }
        if seen_end && !is_punct(c) {
            out.push(text[start..pos].to_string());
            start = pos;
            seen_end = false;
        }
        let at_word_start = i == 0 || pystr::is_space(chars[i - 1].1);
        if at_word_start {
            word_start = pos;
        }
        let next = chars.get(i + 1).map(|&(_, n)| n);
        if is_cjk_terminal(c) {
            seen_end = true;
        } else if is_terminal(c) && next.is_none_or(|n| pystr::is_space(n) || (is_punct(n) && !is_terminal(n))) {
            // End of the word's trailing marks: decide on the whole word.
            let word_end = chars[i + 1..]
                .iter()
                .find(|(_, n)| pystr::is_space(*n))
                .map(|(p, _)| *p)
                .unwrap_or(text.len());
            if word_ends_sentence(&text[word_start..word_end]) {
                seen_end = true;
            }
        }
    }
    out.push(text[start..].to_string());
    out.into_iter()
        .map(|s| pystr::strip(&s).to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `textwrap.wrap(s, width, drop_whitespace=True, break_on_hyphens=False, tabsize=1)`.
fn wrap(s: &str, width: usize) -> Vec<String> {
    let is_ws = |c: char| matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r');
    let normalized: String = s.chars().map(|c| if is_ws(c) { ' ' } else { c }).collect();
    // Alternating runs of spaces and non-spaces, consumed from the end of the vector.
    let mut chunks: Vec<String> = Vec::new();
    for c in normalized.chars() {
        match chunks.last_mut() {
            Some(last) if last.starts_with(' ') == (c == ' ') => last.push(c),
            _ => chunks.push(c.to_string()),
        }
    }
    chunks.reverse();
    let mut lines: Vec<String> = Vec::new();
    while !chunks.is_empty() {
        if !lines.is_empty() && chunks.last().is_some_and(|c| c.starts_with(' ')) {
            chunks.pop();
        }
        let mut line: Vec<String> = Vec::new();
        let mut len = 0;
        while let Some(chunk) = chunks.last() {
            let l = pystr::char_len(chunk);
            if len + l > width {
                break;
            }
            len += l;
            line.push(chunks.pop().expect("chunk"));
        }
        if let Some(chunk) = chunks.last_mut() {
            if pystr::char_len(chunk) > width {
                let room = width.saturating_sub(len).max(1);
                let head: String = chunk.chars().take(room).collect();
                *chunk = chunk.chars().skip(room).collect();
                line.push(head);
            }
        }
        if line.last().is_some_and(|c| c.starts_with(' ')) {
            line.pop();
        }
        if !line.is_empty() {
            lines.push(line.concat());
        }
    }
    lines
}

/// Splits `text` into chunks of at most the language's character limit, as the reference
/// does when text splitting is enabled. Text under the limit comes back as one chunk.
pub fn split_sentences(text: &str, lang: &str) -> Vec<String> {
    split_with_limit(text, char_limit(lang))
}

fn split_with_limit(text: &str, limit: usize) -> Vec<String> {
    if pystr::char_len(text) < limit {
        return vec![pystr::lstrip(text).to_string()];
    }
    let mut chunks = vec![String::new()];
    for sentence in sentences(text) {
        let last = chunks.last_mut().expect("at least one chunk");
        if pystr::char_len(last) + pystr::char_len(&sentence) <= limit {
            *last = pystr::lstrip(&format!("{last} {sentence}")).to_string();
        } else if pystr::char_len(&sentence) > limit {
            chunks.extend(wrap(&sentence, limit));
        } else {
            chunks.push(sentence);
        }
    }
    if chunks.len() > 1 && chunks[0].is_empty() {
        chunks.remove(0);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_chunk() {
        assert_eq!(split_sentences("  Hello there. Bye.", "en"), vec!["Hello there. Bye."]);
    }

    #[test]
    fn finds_sentence_ends_but_not_abbreviations() {
        let s = sentences("Mr. Smith arrived. He said \"hi!\" Then e.g. this... and that? Yes.");
        assert_eq!(
            s,
            vec![
                "Mr. Smith arrived.",
                "He said \"hi!\"",
                "Then e.g. this... and that?",
                "Yes."
            ]
        );
        assert_eq!(sentences("你好。我很好！谢谢"), vec!["你好。", "我很好！", "谢谢"]);
    }

    #[test]
    fn packs_sentences_greedily_under_the_limit() {
        let text = "One two three. Four five six. Seven eight nine.";
        assert_eq!(
            split_with_limit(text, 30),
            vec!["One two three. Four five six.", "Seven eight nine."]
        );
        for chunk in split_with_limit(text, 20) {
            assert!(chunk.chars().count() <= 20, "{chunk}");
        }
    }

    #[test]
    fn wraps_a_sentence_longer_than_the_limit() {
        assert_eq!(wrap("aaa bbb ccc ddd", 7), vec!["aaa bbb", "ccc ddd"]);
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        let text = format!("{} end.", "word ".repeat(60));
        let chunks = split_with_limit(&text, 50);
        assert!(chunks.len() > 1);
        assert!(chunks.iter().all(|c| c.chars().count() <= 50 && !c.starts_with(' ')));
    }
}
