//! The messages of the voicebot protocol (docs: the README's "Voicebots" section): JSON text
//! frames with a `type` field both ways, and binary frames of caller audio from xttsd to the
//! bot. Both directions derive Serialize and Deserialize so that bots written in Rust (the
//! example, `xttsd call --bot`, the tests) use the same types.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::release::ReleaseConfig;
use crate::engine::SpeechOptions;

/// Reads the `options` object of a message (`{"speed": 0.9, "seed": 7}`), naming a bad field.
pub fn parse_options(value: &Value) -> Result<SpeechOptions, Refusal> {
    serde_json::from_value(value.clone()).map_err(|e| {
        let field = match field_of(&e.to_string()).as_str() {
            "message" => "options".to_string(),
            name => format!("options.{name}"),
        };
        Refusal::new(ErrorCode::BadField, format!("options: {e}")).field(&field)
    })
}

/// Bytes before the audio in a binary frame: `seq` u32 LE, `flags` u16 LE, 0 u16.
pub const AUDIO_HEADER_BYTES: usize = 8;
/// `flags` bit: the bot's speech was being sent to the caller when this frame arrived.
pub const FLAG_BOT_SPEAKING: u16 = 1;

/// What caller audio the bot receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forward {
    #[default]
    None,
    Caller,
}

/// How caller audio is encoded in binary frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Little-endian 16-bit linear PCM at the call's rate.
    #[default]
    Pcm16,
    /// G.711 µ-law at the call's rate.
    Ulaw,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Pcm16 => "pcm16",
            Encoding::Ulaw => "ulaw",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AudioSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward: Option<Forward>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
}

/// A message from the bot. Unknown fields are ignored; `id` (any JSON value) is echoed as
/// `ref_id` in an error about the message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum BotMessage {
    /// Sticky defaults for this call.
    #[serde(rename = "session.update")]
    SessionUpdate {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        voice: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lang: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        options: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        release: Option<ReleaseConfig>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audio: Option<AudioSettings>,
        /// The prompt cache: `auto` (deterministic speech is served from and stored in it),
        /// `off` or `refresh`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache: Option<String>,
    },
    /// Appends text to an utterance (the first use creates it).
    #[serde(rename = "speak")]
    Speak {
        utterance_id: String,
        #[serde(default)]
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        voice: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lang: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        options: Option<Value>,
        /// As in `session.update`, for this utterance (taken when it begins).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        flush: bool,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        end: bool,
    },
    #[serde(rename = "flush")]
    Flush { utterance_id: String },
    #[serde(rename = "end")]
    End { utterance_id: String },
    /// Barge-in: one utterance, or all when none is named.
    #[serde(rename = "clear")]
    Clear {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        utterance_id: Option<String>,
    },
    #[serde(rename = "mark")]
    Mark { name: String },
    #[serde(rename = "hangup")]
    Hangup,
    #[serde(rename = "ping")]
    Ping,
}

/// The `type` names of [`BotMessage`].
pub const BOT_MESSAGE_TYPES: &[&str] = &[
    "session.update",
    "speak",
    "flush",
    "end",
    "clear",
    "mark",
    "hangup",
    "ping",
];

/// Why an utterance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DoneReason {
    Completed,
    Cleared,
    Hangup,
    Error,
}

/// Who ended the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HangupBy {
    Caller,
    Bot,
    Xttsd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pressure {
    Pause,
    Resume,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadMessage,
    BadField,
    UnknownType,
    UnknownVoice,
    UnsupportedLanguage,
    UnknownUtterance,
    UtteranceClosed,
    TextTooLong,
    BufferFull,
    CallEnded,
    EngineBusy,
    SynthesisFailed,
    /// Caller audio was dropped because the bot read its socket too slowly.
    AudioOverflow,
    /// Another connection already controls this call.
    AlreadyControlled,
}

/// A message from xttsd to the bot. Times (`at_ms`) are on the call clock: milliseconds
/// since the call's media arrived (0 before it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    #[serde(rename = "session.started")]
    SessionStarted {
        call_id: String,
        attached: bool,
        rate: u32,
        encoding: Encoding,
        frame_ms: u32,
        /// For calls routed through FastAGI: caller ID, DNID, uniqueid and the script's parameters.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        vars: BTreeMap<String, String>,
    },
    #[serde(rename = "call.attached")]
    CallAttached { at_ms: u64, rate: u32 },
    #[serde(rename = "speech.started")]
    SpeechStarted {
        utterance_id: String,
        at_ms: u64,
        ttfa_ms: u64,
    },
    #[serde(rename = "speech.done")]
    SpeechDone {
        utterance_id: String,
        reason: DoneReason,
        played_ms: u64,
        played_text: String,
        unplayed_text: String,
    },
    #[serde(rename = "cleared")]
    Cleared { utterance_ids: Vec<String>, at_ms: u64 },
    #[serde(rename = "mark")]
    Mark { name: String, at_ms: u64, cleared: bool },
    #[serde(rename = "dtmf")]
    Dtmf { digit: String, at_ms: u64 },
    #[serde(rename = "backpressure")]
    Backpressure {
        state: Pressure,
        buffered_chars: usize,
        queued_audio_ms: u64,
    },
    #[serde(rename = "hangup")]
    Hangup { by: HangupBy, at_ms: u64 },
    #[serde(rename = "error")]
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        field: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        utterance_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ref_id: Option<Value>,
        fatal: bool,
    },
    #[serde(rename = "pong")]
    Pong,
}

/// An error about one message, before it is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
    pub field: Option<String>,
    pub utterance_id: Option<String>,
}

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
            utterance_id: None,
        }
    }

    pub fn field(mut self, field: &str) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn utterance(mut self, id: &str) -> Self {
        self.utterance_id = Some(id.into());
        self
    }

    /// The event telling the bot, about the message with `ref_id`.
    pub fn event(self, ref_id: Option<Value>) -> Event {
        Event::Error {
            code: self.code,
            message: self.message,
            field: self.field,
            utterance_id: self.utterance_id,
            ref_id,
            fatal: false,
        }
    }
}

/// Parses one text frame from the bot: the message and its `id`, or the refusal (with the
/// `id` when it could be read).
pub fn parse_bot_message(text: &str) -> Result<(BotMessage, Option<Value>), (Refusal, Option<Value>)> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        (
            Refusal::new(ErrorCode::BadMessage, format!("not a JSON message: {e}")),
            None,
        )
    })?;
    let Some(object) = value.as_object() else {
        return Err((
            Refusal::new(ErrorCode::BadMessage, "a message must be a JSON object"),
            None,
        ));
    };
    let id = object.get("id").cloned();
    let kind = match object.get("type") {
        Some(Value::String(kind)) => kind.clone(),
        Some(_) => {
            return Err((
                Refusal::new(ErrorCode::BadField, "type must be a string").field("type"),
                id,
            ))
        }
        None => {
            return Err((
                Refusal::new(ErrorCode::BadMessage, "missing field `type`").field("type"),
                id,
            ))
        }
    };
    if !BOT_MESSAGE_TYPES.contains(&kind.as_str()) {
        let known = BOT_MESSAGE_TYPES.join(", ");
        return Err((
            Refusal::new(
                ErrorCode::UnknownType,
                format!("unknown type '{kind}' (known: {known})"),
            )
            .field("type"),
            id,
        ));
    }
    match serde_json::from_value::<BotMessage>(value) {
        Ok(message) => Ok((message, id)),
        Err(e) => {
            let field = field_of(&e.to_string());
            Err((
                Refusal::new(ErrorCode::BadField, format!("{kind}: {e}")).field(&field),
                id,
            ))
        }
    }
}

/// The field a serde error names ("missing field `text`", "unknown field `pitch`" inside
/// options, "invalid type ... for `utterance_id`"), else "message".
fn field_of(message: &str) -> String {
    for marker in ["missing field `", "unknown field `"] {
        if let Some(rest) = message.split(marker).nth(1) {
            if let Some(name) = rest.split('`').next() {
                return name.to_string();
            }
        }
    }
    "message".into()
}

/// One binary frame of caller audio.
pub fn encode_audio_frame(seq: u32, flags: u16, audio: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(AUDIO_HEADER_BYTES + audio.len());
    out.put_u32_le(seq);
    out.put_u16_le(flags);
    out.put_u16_le(0);
    out.put_slice(audio);
    out.freeze()
}

/// Reads a binary frame: (seq, flags, audio).
pub fn decode_audio_frame(frame: &[u8]) -> Option<(u32, u16, &[u8])> {
    if frame.len() < AUDIO_HEADER_BYTES {
        return None;
    }
    let seq = u32::from_le_bytes(frame[0..4].try_into().ok()?);
    let flags = u16::from_le_bytes(frame[4..6].try_into().ok()?);
    Some((seq, flags, &frame[AUDIO_HEADER_BYTES..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speak_parses_with_defaults_and_ignores_unknown_fields() {
        let (m, id) =
            parse_bot_message(r#"{"type":"speak","utterance_id":"u1","text":"Hi","id":7,"extra":1}"#).unwrap();
        assert_eq!(id, Some(Value::from(7)));
        assert_eq!(
            m,
            BotMessage::Speak {
                utterance_id: "u1".into(),
                text: "Hi".into(),
                voice: None,
                lang: None,
                options: None,
                cache: None,
                flush: false,
                end: false
            }
        );
        let (m, _) = parse_bot_message(r#"{"type":"clear"}"#).unwrap();
        assert_eq!(m, BotMessage::Clear { utterance_id: None });
    }

    #[test]
    fn bad_messages_name_what_is_wrong() {
        let code = |text: &str| {
            let (r, _) = parse_bot_message(text).unwrap_err();
            (r.code, r.field)
        };
        assert_eq!(code("{oops"), (ErrorCode::BadMessage, None));
        assert_eq!(code("[1]"), (ErrorCode::BadMessage, None));
        assert_eq!(code(r#"{"text":"x"}"#), (ErrorCode::BadMessage, Some("type".into())));
        assert_eq!(
            code(r#"{"type":"sing"}"#),
            (ErrorCode::UnknownType, Some("type".into()))
        );
        assert_eq!(
            code(r#"{"type":"speak","text":"x"}"#),
            (ErrorCode::BadField, Some("utterance_id".into()))
        );
        let bad = parse_options(&serde_json::json!({"pitch": 2})).unwrap_err();
        assert_eq!(
            (bad.code, bad.field.as_deref()),
            (ErrorCode::BadField, Some("options.pitch"))
        );
        assert_eq!(
            parse_options(&serde_json::json!({"speed": 0.9})).unwrap().speed,
            Some(0.9)
        );
        let (r, id) = parse_bot_message(r#"{"type":"flush","id":"x1"}"#).unwrap_err();
        assert_eq!((r.code, id), (ErrorCode::BadField, Some(Value::from("x1"))));
    }

    #[test]
    fn events_serialize_with_the_protocol_names() {
        let e = Event::SpeechDone {
            utterance_id: "u".into(),
            reason: DoneReason::Cleared,
            played_ms: 40,
            played_text: "a ".into(),
            unplayed_text: "b".into(),
        };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["type"], "speech.done");
        assert_eq!(json["reason"], "cleared");
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
        let err = Refusal::new(ErrorCode::UnknownUtterance, "no")
            .utterance("u")
            .event(Some(Value::from(3)));
        let json = serde_json::to_value(&err).unwrap();
        assert_eq!(json["code"], "unknown_utterance");
        assert_eq!(json["ref_id"], 3);
        assert_eq!(json["fatal"], false);
    }

    #[test]
    fn audio_frames_round_trip() {
        let f = encode_audio_frame(0x01020304, FLAG_BOT_SPEAKING, &[9, 8, 7]);
        assert_eq!(&f[..8], &[4, 3, 2, 1, 1, 0, 0, 0]);
        assert_eq!(decode_audio_frame(&f), Some((0x01020304, 1, &[9u8, 8, 7][..])));
        assert_eq!(decode_audio_frame(&[1, 2]), None);
    }
}
