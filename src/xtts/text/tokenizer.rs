//! Steps 3-5 of the reference `encode`: language tag, `[SPACE]` for every space, BPE ids
//! from the model's `vocab.json`.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use tokenizers::Tokenizer;

use super::{base_language, clean, ensure_not_empty, split, MAX_TEXT_TOKENS};

/// Turns text into the GPT's text token ids, as the reference's VoiceBpeTokenizer does.
pub struct TextFrontend {
    tokenizer: Tokenizer,
}

impl TextFrontend {
    /// Loads the model's `vocab.json` (a Hugging Face `tokenizers` file).
    pub fn from_file(vocab: &Path) -> Result<Self> {
        let tokenizer = Tokenizer::from_file(vocab)
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("loading tokenizer {}", vocab.display()))?;
        Ok(TextFrontend { tokenizer })
    }

    /// Whether the vocabulary has this language's `[xx]` token.
    pub fn has_language_token(&self, lang: &str) -> bool {
        base_language(lang).is_ok_and(|base| self.tokenizer.token_to_id(&language_tag(base)).is_some())
    }

    /// Token ids of already cleaned text (see [`super::clean`]) with the language tag.
    pub fn encode_cleaned(&self, cleaned: &str, lang: &str) -> Result<Vec<i64>> {
        let base = base_language(lang)?;
        let text = format!("{}{}", language_tag(base), cleaned).replace(' ', "[SPACE]");
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| anyhow!("tokenizing: {e}"))?;
        let ids: Vec<i64> = encoding.get_ids().iter().map(|&id| id as i64).collect();
        if ids.len() > MAX_TEXT_TOKENS {
            bail!(
                "sentence is too long: {} text tokens after cleaning, the model takes at most {MAX_TEXT_TOKENS}; \
                 split the text into shorter sentences",
                ids.len()
            );
        }
        Ok(ids)
    }

    /// Token ids of one sentence: cleaning plus [`Self::encode_cleaned`].
    pub fn encode(&self, sentence: &str, lang: &str) -> Result<Vec<i64>> {
        self.encode_cleaned(&clean(sentence, lang)?, lang)
    }

    /// Token ids of each sentence of `text` (one entry when `split` is false), each
    /// starting with the language token, without the [START]/[STOP] the GPT adds.
    pub fn encode_sentences(&self, text: &str, lang: &str, split: bool) -> Result<Vec<Vec<i64>>> {
        Ok(self
            .sentences(text, lang, split)?
            .into_iter()
            .map(|s| s.tokens)
            .collect())
    }

    /// Each sentence of `text` as [`Self::encode_sentences`] splits it, with its text as
    /// written and as cleaned for the model.
    pub fn sentences(&self, text: &str, lang: &str, split: bool) -> Result<Vec<Sentence>> {
        base_language(lang)?;
        ensure_not_empty(text)?;
        let sentences = if split {
            split::split_sentences(text, lang)
        } else {
            vec![text.to_string()]
        };
        sentences
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let encoded = clean(&s, lang).and_then(|cleaned| {
                    let tokens = self.encode_cleaned(&cleaned, lang)?;
                    Ok((cleaned, tokens))
                });
                let (cleaned, tokens) = encoded.with_context(|| format!("sentence {}: {:?}", i + 1, preview(&s)))?;
                Ok(Sentence {
                    text: s,
                    cleaned,
                    tokens,
                })
            })
            .collect()
    }
}

/// One sentence of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Sentence {
    /// As written.
    pub text: String,
    /// As the model reads it: lowercase, numbers and symbols spelled out, romanized where the
    /// language is (zh, ja, ko).
    pub cleaned: String,
    /// Token ids of the cleaned text, starting with the language token.
    pub tokens: Vec<i64>,
}

/// `[en]`, ..., `[zh-cn]`: the tag the reference prepends (zh is tagged zh-cn).
fn language_tag(base: &str) -> String {
    let tag = if base == "zh" { "zh-cn" } else { base };
    format!("[{tag}]")
}

fn preview(s: &str) -> String {
    let mut p: String = s.chars().take(50).collect();
    if p.len() < s.len() {
        p.push_str("...");
    }
    p
}
