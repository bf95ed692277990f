//! XTTS text front-end: per-language cleaning, number expansion, BPE tokens, sentence splitting.

use std::path::Path;

use anyhow::Result;

/// Turns text into the GPT's text token ids, as the reference's VoiceBpeTokenizer does.
pub struct TextFrontend {}

impl TextFrontend {
    /// Loads the model's `vocab.json`.
    pub fn from_file(_vocab: &Path) -> Result<Self> {
        anyhow::bail!("text front-end not implemented yet")
    }

    /// Token ids of each sentence of `text` (one entry when `split` is false), each
    /// starting with the language token, without the [START]/[STOP] the GPT adds.
    pub fn encode_sentences(&self, _text: &str, _lang: &str, _split: bool) -> Result<Vec<Vec<i64>>> {
        anyhow::bail!("text front-end not implemented yet")
    }
}
