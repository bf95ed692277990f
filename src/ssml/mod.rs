//! An SSML subset, parsed into what the engine speaks: segments of text with their voice,
//! language and rate, and breaks between them.
//!
//! Elements: `<speak>` (the root; `xml:lang` sets the language), `<break time="500ms"|"1.5s"
//! strength="none|x-weak|weak|medium|strong|x-strong">`, `<say-as interpret-as="digits|
//! characters|telephone|cardinal|ordinal|date|time|currency" format="dmy|...">` (see
//! [`say_as`]), `<prosody rate="slow|fast|80%|+20%|1.2">` (nested rates multiply; the result is
//! kept within the engine's speed range), `<lang xml:lang="de">`, `<voice name="anna">`,
//! `<sub alias="...">`, `<p>` and `<s>` (each ends as a sentence). Any other element keeps
//! its text. Malformed SSML is an error naming its line and column; tags are never spoken.

pub mod say_as;

use std::time::Duration;

use roxmltree::{Document, Node};

use crate::engine::SPEED_RANGE;
use crate::xtts::text::LANGUAGES;

/// Longest single break.
const MAX_BREAK: Duration = Duration::from_secs(10);
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// Text to speak as one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub text: String,
    pub voice: String,
    pub lang: String,
    /// Speaking rate relative to the request's (1.0 = unchanged).
    pub rate: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Speak(Segment),
    Break(Duration),
}

/// Malformed SSML, with where it is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("SSML line {line}, column {column}: {message}")]
pub struct SsmlError {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

/// The voice, language and rate in force inside an element.
#[derive(Clone)]
struct Context {
    voice: String,
    lang: String,
    rate: f64,
}

struct Builder<'a> {
    doc: &'a Document<'a>,
    items: Vec<Item>,
    current: Option<Segment>,
}

/// Parses SSML spoken by default in `voice` and `lang`.
pub fn parse(text: &str, voice: &str, lang: &str) -> Result<Vec<Item>, SsmlError> {
    let doc = Document::parse(text).map_err(|e| SsmlError {
        line: e.pos().row,
        column: e.pos().col,
        message: strip_position(&e.to_string()),
    })?;
    let mut b = Builder {
        doc: &doc,
        items: Vec::new(),
        current: None,
    };
    let root = doc.root_element();
    if root.tag_name().name() != "speak" {
        return Err(b.error(
            root,
            format!("the root element must be <speak>, not <{}>", root.tag_name().name()),
        ));
    }
    let ctx = Context {
        voice: voice.to_string(),
        lang: lang.to_string(),
        rate: 1.0,
    };
    b.element(root, &ctx)?;
    b.flush();
    Ok(b.items)
}

/// roxmltree's message without its trailing " at L:C" (the error carries the position).
fn strip_position(message: &str) -> String {
    match message.rfind(" at ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// XTTS's code for an SSML language tag: `en-US` -> `en`, `zh-CN` -> `zh-cn`.
fn language_code(tag: &str) -> Option<String> {
    let lower = tag.to_lowercase().replace('_', "-");
    let base = lower.split('-').next().unwrap_or("");
    let code = if base == "zh" { "zh-cn" } else { base };
    LANGUAGES.contains(&code).then(|| code.to_string())
}

/// Base code of an XTTS language (`zh-cn` -> `zh`).
fn base(lang: &str) -> &str {
    lang.split('-').next().unwrap_or(lang)
}

impl Builder<'_> {
    fn error(&self, node: Node, message: impl Into<String>) -> SsmlError {
        let pos = self.doc.text_pos_at(node.range().start);
        SsmlError {
            line: pos.row,
            column: pos.col,
            message: message.into(),
        }
    }

    fn required<'n>(&self, node: Node<'n, 'n>, name: &str) -> Result<&'n str, SsmlError> {
        node.attribute(name)
            .ok_or_else(|| self.error(node, format!("<{}> needs a {name} attribute", node.tag_name().name())))
    }

    /// Adds text spoken in `ctx`.
    fn text(&mut self, text: &str, ctx: &Context) {
        let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if words.is_empty() {
            // Whitespace between elements still separates their words.
            if !text.is_empty() {
                if let Some(seg) = self.current.as_mut() {
                    if !seg.text.ends_with(' ') {
                        seg.text.push(' ');
                    }
                }
            }
            return;
        }
        let same = self
            .current
            .as_ref()
            .is_some_and(|s| s.voice == ctx.voice && s.lang == ctx.lang && s.rate == ctx.rate);
        if !same {
            self.flush();
            self.current = Some(Segment {
                text: String::new(),
                voice: ctx.voice.clone(),
                lang: ctx.lang.clone(),
                rate: ctx.rate,
            });
        }
        let seg = self.current.as_mut().expect("a segment was just started");
        if text.starts_with(char::is_whitespace) && !seg.text.is_empty() && !seg.text.ends_with(' ') {
            seg.text.push(' ');
        }
        seg.text.push_str(&words);
        if text.ends_with(char::is_whitespace) {
            seg.text.push(' ');
        }
    }

    fn flush(&mut self) {
        if let Some(mut seg) = self.current.take() {
            seg.text = seg.text.trim().to_string();
            if !seg.text.is_empty() {
                self.items.push(Item::Speak(seg));
            }
        }
    }

    fn pause(&mut self, d: Duration) {
        self.flush();
        match self.items.last_mut() {
            Some(Item::Break(prev)) => *prev = (*prev + d).min(MAX_BREAK),
            _ => self.items.push(Item::Break(d)),
        }
    }

    /// Ends the current text as a sentence.
    fn end_sentence(&mut self) {
        if let Some(seg) = self.current.as_mut() {
            let trimmed = seg.text.trim_end();
            if !trimmed.is_empty() && !trimmed.ends_with(['.', '!', '?', '…', '。', '！', '？', ';', ':']) {
                seg.text = format!("{trimmed}. ");
            }
        }
    }

    fn children(&mut self, node: Node, ctx: &Context) -> Result<(), SsmlError> {
        for child in node.children() {
            if child.is_text() {
                self.text(child.text().unwrap_or(""), ctx);
            } else if child.is_element() {
                self.element(child, ctx)?;
            }
        }
        Ok(())
    }

    fn element(&mut self, node: Node, ctx: &Context) -> Result<(), SsmlError> {
        let mut inner = ctx.clone();
        match node.tag_name().name() {
            "speak" => {
                if let Some(tag) = node.attribute((XML_NS, "lang")) {
                    inner.lang =
                        language_code(tag).ok_or_else(|| self.error(node, format!("unknown language '{tag}'")))?;
                }
                self.children(node, &inner)
            }
            "break" => {
                let pause = self.break_length(node)?;
                self.pause(pause);
                Ok(())
            }
            "say-as" => {
                let kind = self.required(node, "interpret-as")?;
                let text: String = node
                    .descendants()
                    .filter(|n| n.is_text())
                    .filter_map(|n| n.text())
                    .collect();
                match say_as::expand(kind, node.attribute("format"), &text, base(&ctx.lang)) {
                    Ok(Some(spoken)) => {
                        self.text(&format!(" {spoken} "), ctx);
                        Ok(())
                    }
                    Ok(None) => self.children(node, ctx),
                    Err(message) => Err(self.error(node, format!("say-as {kind}: {message}"))),
                }
            }
            "prosody" => {
                if let Some(rate) = node.attribute("rate") {
                    let factor = rate_factor(rate)
                        .ok_or_else(|| self.error(node, format!("prosody rate '{rate}' is not a rate")))?;
                    inner.rate = (ctx.rate * factor).clamp(*SPEED_RANGE.start(), *SPEED_RANGE.end());
                }
                self.children(node, &inner)
            }
            "lang" => {
                let tag = node
                    .attribute((XML_NS, "lang"))
                    .ok_or_else(|| self.error(node, "<lang> needs an xml:lang attribute"))?;
                inner.lang = language_code(tag).ok_or_else(|| self.error(node, format!("unknown language '{tag}'")))?;
                self.children(node, &inner)
            }
            "voice" => {
                let name = self.required(node, "name")?;
                if name.trim().is_empty() {
                    return Err(self.error(node, "<voice> name is empty"));
                }
                inner.voice = name.trim().to_string();
                self.children(node, &inner)
            }
            "sub" => {
                let alias = self.required(node, "alias")?;
                self.text(&format!(" {alias} "), ctx);
                Ok(())
            }
            "p" | "s" => {
                self.end_sentence();
                self.children(node, ctx)?;
                self.end_sentence();
                Ok(())
            }
            _ => self.children(node, ctx),
        }
    }

    fn break_length(&self, node: Node) -> Result<Duration, SsmlError> {
        if let Some(time) = node.attribute("time") {
            let t = time.trim();
            let (number, scale) = if let Some(ms) = t.strip_suffix("ms") {
                (ms, 1.0)
            } else if let Some(s) = t.strip_suffix('s') {
                (s, 1000.0)
            } else {
                return Err(self.error(node, format!("break time '{time}' needs a unit (ms or s)")));
            };
            let ms: f64 = number
                .trim()
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| self.error(node, format!("break time '{time}' is not a duration")))?;
            let d = Duration::from_secs_f64(ms * scale / 1000.0);
            if d > MAX_BREAK {
                return Err(self.error(
                    node,
                    format!("break time '{time}' is longer than {} s", MAX_BREAK.as_secs()),
                ));
            }
            return Ok(d);
        }
        let ms = match node.attribute("strength").unwrap_or("medium") {
            "none" => 0,
            "x-weak" => 100,
            "weak" => 200,
            "medium" => 400,
            "strong" => 700,
            "x-strong" => 1200,
            other => {
                return Err(self.error(
                    node,
                    format!("break strength '{other}' is not none, x-weak, weak, medium, strong or x-strong"),
                ))
            }
        };
        Ok(Duration::from_millis(ms))
    }
}

/// A prosody rate as a factor: a keyword, a percentage (`80%`), a relative change (`+20%`,
/// `-10%`) or a plain factor (`1.2`).
fn rate_factor(rate: &str) -> Option<f64> {
    let r = rate.trim();
    let factor = match r {
        "x-slow" => 0.6,
        "slow" => 0.8,
        "medium" | "default" => 1.0,
        "fast" => 1.25,
        "x-fast" => 1.5,
        _ => {
            if let Some(p) = r.strip_suffix('%') {
                let v: f64 = p.parse().ok()?;
                if r.starts_with(['+', '-']) {
                    1.0 + v / 100.0
                } else {
                    v / 100.0
                }
            } else {
                r.parse().ok()?
            }
        }
    };
    (factor.is_finite() && factor > 0.0).then_some(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(ssml: &str) -> Vec<Item> {
        parse(ssml, "default", "en").unwrap()
    }

    fn seg(text: &str, voice: &str, lang: &str, rate: f64) -> Item {
        Item::Speak(Segment {
            text: text.into(),
            voice: voice.into(),
            lang: lang.into(),
            rate,
        })
    }

    #[test]
    fn segments_split_where_voice_language_or_rate_change() {
        let got = items(
            r#"<speak>Hello <voice name="anna">Hallo <lang xml:lang="de-DE">Welt</lang></voice>
               <prosody rate="slow">slowly <prosody rate="50%">slower</prosody></prosody> end</speak>"#,
        );
        assert_eq!(
            got,
            vec![
                seg("Hello", "default", "en", 1.0),
                seg("Hallo", "anna", "en", 1.0),
                seg("Welt", "anna", "de", 1.0),
                seg("slowly", "default", "en", 0.8),
                seg("slower", "default", "en", 0.5), // 0.8 x 0.5 = 0.4, kept at the 0.5 floor
                seg("end", "default", "en", 1.0),
            ]
        );
    }

    #[test]
    fn breaks_sentences_and_substitutions() {
        let got = items(
            r#"<speak xml:lang="fr"><p><s>Un</s><s>deux!</s></p><break time="1.5s"/><break strength="weak"/>
               <sub alias="World Health Organisation">WHO</sub><break/><emphasis>kept</emphasis> <mark name="m"/>text</speak>"#,
        );
        assert_eq!(
            got,
            vec![
                seg("Un. deux!", "default", "fr", 1.0),
                Item::Break(Duration::from_millis(1700)),
                seg("World Health Organisation", "default", "fr", 1.0),
                Item::Break(Duration::from_millis(400)),
                seg("kept text", "default", "fr", 1.0),
            ]
        );
    }

    #[test]
    fn malformed_ssml_names_the_position() {
        let cases = [
            ("<speak>Hello <break time='2x'/></speak>", 1, 14, "needs a unit"),
            ("<speak>\n  <say-as>5</say-as></speak>", 2, 3, "interpret-as"),
            ("<speak>Hello <b>world</speak>", 1, 22, "expected 'b' tag"),
            ("<speak>Hi & bye</speak>", 1, 11, ""),
            ("<speech>Hi</speech>", 1, 1, "root element must be <speak>"),
            (
                "<speak><lang xml:lang='tlh'>Qapla</lang></speak>",
                1,
                8,
                "unknown language 'tlh'",
            ),
            (
                "<speak><say-as interpret-as='date'>2026-13-01</say-as></speak>",
                1,
                8,
                "month 13",
            ),
            (
                "<speak><say-as interpret-as='currency'>5 JPY</say-as></speak>",
                1,
                8,
                "'JPY'",
            ),
            ("<speak><prosody rate='zippy'>x</prosody></speak>", 1, 8, "zippy"),
            ("<speak><break time='20s'/></speak>", 1, 8, "longer than 10 s"),
            ("Hello <speak>", 1, 1, ""),
        ];
        for (ssml, line, column, message) in cases {
            let err = parse(ssml, "default", "en").unwrap_err();
            assert_eq!((err.line, err.column), (line, column), "{ssml}: {err}");
            assert!(err.message.contains(message), "{ssml}: {err}");
            assert!(err
                .to_string()
                .starts_with(&format!("SSML line {line}, column {column}: ")));
        }
    }

    #[test]
    fn rates_parse() {
        assert_eq!(rate_factor("+20%"), Some(1.2));
        assert_eq!(rate_factor("80%"), Some(0.8));
        assert_eq!(rate_factor("1.5"), Some(1.5));
        assert_eq!(rate_factor("-100%"), None);
        assert_eq!(language_code("zh-CN").as_deref(), Some("zh-cn"));
        assert_eq!(language_code("pt-BR").as_deref(), Some("pt"));
    }
}
