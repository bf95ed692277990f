//! FastAGI wire formats, without I/O: the `agi_*` preamble Asterisk sends first, the script
//! name and query from `agi_network_script`, command lines we send (with Asterisk's quoting
//! rules) and the reply lines Asterisk sends back, including the out-of-band `HANGUP`.

use std::collections::BTreeMap;

use bytes::{BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Asterisk reads command lines up to 8 KiB; longer ones are cut, so we refuse them.
pub const MAX_COMMAND_LEN: usize = 8192;
/// Bound on a preamble (Asterisk's is well under 4 KiB even with many arguments).
const MAX_PREAMBLE_LEN: usize = 64 * 1024;
/// Bound on one reply, multi-line 520 usage text included.
const MAX_REPLY_LEN: usize = 64 * 1024;

/// Malformed FastAGI input.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed AGI data: {0}")]
    Malformed(String),
    #[error("AGI {what} longer than {limit} bytes")]
    TooLong { what: &'static str, limit: usize },
}

fn malformed(msg: impl Into<String>) -> CodecError {
    CodecError::Malformed(msg.into())
}

// ---------------------------------------------------------------------------------------------
// Preamble

/// The `agi_*` variables Asterisk sends when the session opens.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Preamble {
    /// `agi_network_script`: the URL path after `host[:port]/`, query included; empty when the
    /// URL had no path.
    pub network_script: String,
    /// `agi_request`: the full first argument of `AGI()`.
    pub request: String,
    pub channel: String,
    pub language: String,
    pub uniqueid: String,
    /// `agi_arg_1` ... `agi_arg_N`, in order.
    pub args: Vec<String>,
    /// Every variable as sent, names with their `agi_` prefix.
    pub vars: BTreeMap<String, String>,
}

impl Preamble {
    /// Parses the preamble text: `name: value` lines, each ending in LF (a CR before it is
    /// tolerated), without the terminating empty line.
    pub fn parse(text: &str) -> Result<Preamble, CodecError> {
        let mut vars = BTreeMap::new();
        for line in text.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            // Split on the first ": "; a value may be empty (`agi_accountcode: `), and some
            // proxies strip that trailing space, so a bare `name:` is accepted too.
            let (name, value) = match line.split_once(": ") {
                Some(pair) => pair,
                None => match line.strip_suffix(':') {
                    Some(name) => (name, ""),
                    None => return Err(malformed(format!("preamble line without ': ': {line:?}"))),
                },
            };
            if !name.starts_with("agi_") || name.len() == 4 || name.contains(char::is_whitespace) {
                return Err(malformed(format!("not an agi_ variable: {name:?}")));
            }
            vars.insert(name.to_string(), value.to_string());
        }
        let get = |name: &str| vars.get(name).cloned().unwrap_or_default();
        if !vars.contains_key("agi_request") {
            return Err(malformed("preamble has no agi_request"));
        }
        let args = collect_args(&vars)?;
        Ok(Preamble {
            network_script: get("agi_network_script"),
            request: get("agi_request"),
            channel: get("agi_channel"),
            language: get("agi_language"),
            uniqueid: get("agi_uniqueid"),
            args,
            vars,
        })
    }
}

/// `agi_arg_N` values ordered by N; they must be numbered 1..=count without gaps.
fn collect_args(vars: &BTreeMap<String, String>) -> Result<Vec<String>, CodecError> {
    let mut numbered = Vec::new();
    for (name, value) in vars {
        if let Some(n) = name.strip_prefix("agi_arg_") {
            let n: usize = n
                .parse()
                .map_err(|_| malformed(format!("bad argument number in {name:?}")))?;
            numbered.push((n, value.clone()));
        }
    }
    numbered.sort_by_key(|(n, _)| *n);
    for (i, (n, _)) in numbered.iter().enumerate() {
        if *n != i + 1 {
            return Err(malformed(format!("agi_arg_{} is missing", i + 1)));
        }
    }
    Ok(numbered.into_iter().map(|(_, v)| v).collect())
}

/// Where a decoder has looked for line ends so far, so a peer trickling bytes in costs linear
/// time, not a rescan of the whole buffer on each read.
#[derive(Debug, Default, Clone, Copy)]
struct LineScan {
    /// Start of the first line not yet complete.
    line_start: usize,
    /// Bytes from `line_start` on already known to hold no LF.
    scanned: usize,
}

impl LineScan {
    /// The index of the LF ending the current line, if it has arrived.
    fn next_line_end(&mut self, buf: &[u8]) -> Option<usize> {
        let from = self.scanned.max(self.line_start);
        match buf[from..].iter().position(|&b| b == b'\n') {
            Some(i) => Some(from + i),
            None => {
                self.scanned = buf.len();
                None
            }
        }
    }

    /// The line ending at `end` is done with; the next starts after it.
    fn advance(&mut self, end: usize) {
        self.line_start = end + 1;
        self.scanned = end + 1;
    }
}

/// Decodes the preamble: everything up to and including the first empty line.
#[derive(Debug, Default)]
pub struct PreambleDecoder {
    scan: LineScan,
}

impl Decoder for PreambleDecoder {
    type Item = Preamble;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Preamble>, CodecError> {
        loop {
            let Some(end) = self.scan.next_line_end(src) else {
                if src.len() > MAX_PREAMBLE_LEN {
                    return Err(CodecError::TooLong {
                        what: "preamble",
                        limit: MAX_PREAMBLE_LEN,
                    });
                }
                return Ok(None);
            };
            let line = &src[self.scan.line_start..end];
            if line.is_empty() || line == b"\r" {
                let text_len = self.scan.line_start;
                self.scan = LineScan::default();
                let block = src.split_to(end + 1);
                let text = std::str::from_utf8(&block[..text_len]).map_err(|_| malformed("preamble is not UTF-8"))?;
                return Preamble::parse(text).map(Some);
            }
            self.scan.advance(end);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Script and query

/// The script part of `agi_network_script`: `say?voice=NAME&lang=xx` → name `say` and the
/// decoded parameters, in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Script {
    pub name: String,
    pub params: Vec<(String, String)>,
}

impl Script {
    /// Percent-decodes the name and each `key=value` (a `+` in the query means a space, as in
    /// HTML forms). A parameter without `=` gets an empty value.
    pub fn parse(network_script: &str) -> Result<Script, CodecError> {
        let (name, query) = network_script.split_once('?').unwrap_or((network_script, ""));
        let name = percent_decode(name, false)?;
        let mut params = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            params.push((percent_decode(key, true)?, percent_decode(value, true)?));
        }
        Ok(Script { name, params })
    }

    /// The last value given for `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn percent_decode(s: &str, plus_is_space: bool) -> Result<String, CodecError> {
    let s = if plus_is_space {
        s.replace('+', " ")
    } else {
        s.to_string()
    };
    percent_encoding::percent_decode_str(&s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| malformed(format!("{s:?} is not UTF-8 once percent-decoded")))
}

// ---------------------------------------------------------------------------------------------
// Commands

/// One AGI command: fixed command words (`STREAM FILE`) and arguments, quoted as needed.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub name: &'static str,
    pub args: Vec<String>,
}

impl Command {
    pub fn new(name: &'static str, args: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Command {
            name,
            args: args.into_iter().map(Into::into).collect(),
        }
    }

    /// The command line, LF included. Fails on a CR or LF inside an argument (it would end
    /// the line early) and on lines longer than Asterisk reads.
    pub fn to_line(&self) -> Result<String, CodecError> {
        let mut line = self.name.to_string();
        for arg in &self.args {
            if arg.contains(['\n', '\r']) {
                return Err(malformed(format!("line break in argument of {}", self.name)));
            }
            line.push(' ');
            line.push_str(&quote_arg(arg));
        }
        line.push('\n');
        if line.len() > MAX_COMMAND_LEN {
            return Err(CodecError::TooLong {
                what: "command",
                limit: MAX_COMMAND_LEN,
            });
        }
        Ok(line)
    }
}

/// Quotes an argument the way Asterisk's parser reads it back: plain words as they are,
/// anything empty or with blanks, quotes or backslashes inside `"..."` with `"` and `\`
/// escaped by a backslash.
pub fn quote_arg(arg: &str) -> String {
    let plain = !arg.is_empty() && !arg.contains([' ', '\t', '"', '\\']);
    if plain {
        return arg.to_string();
    }
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('"');
    for c in arg.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Splits a command line into words as Asterisk does: blanks separate words, `"` toggles
/// grouping (and opens a word when it follows a blank, so `""` is an empty word), and a
/// backslash makes the next character literal.
pub fn split_args(line: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    let (mut quoted, mut escaped, mut between) = (false, false, true);
    for c in line.chars() {
        match c {
            '"' if !escaped => {
                quoted = !quoted;
                if quoted && between {
                    words.push(String::new());
                    between = false;
                }
            }
            ' ' | '\t' if !quoted && !escaped => between = true,
            '\\' if !escaped => escaped = true,
            _ => {
                if between {
                    words.push(String::new());
                    between = false;
                }
                words.last_mut().expect("a word was opened").push(c);
                escaped = false;
            }
        }
    }
    words
}

/// Writes commands as lines.
#[derive(Debug, Default)]
pub struct AgiCodec {
    scan: LineScan,
}

impl Encoder<&Command> for AgiCodec {
    type Error = CodecError;

    fn encode(&mut self, cmd: &Command, dst: &mut BytesMut) -> Result<(), CodecError> {
        dst.put_slice(cmd.to_line()?.as_bytes());
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Replies

/// One line (or, for 520 usage, one block) from Asterisk during the session.
#[derive(Debug, Clone, PartialEq)]
pub enum AgiLine {
    /// `200 result=<value> [(<data>)] [endpos=<n>] [key=value ...]`.
    Reply {
        code: u16,
        result: String,
        data: Option<String>,
        endpos: Option<i64>,
        extra: Vec<(String, String)>,
    },
    /// The channel hung up (out of band; may come before a pending reply, and twice).
    Hangup,
    /// `510 Invalid or unknown command`.
    InvalidCommand(String),
    /// `511 Command Not Permitted on a dead channel or intercept routine`.
    DeadChannel(String),
    /// `520 ...`: bad syntax; single line, or the usage text of the multi-line form.
    Usage(String),
}

impl AgiLine {
    /// The integer result of a 200 reply (most commands; GET DATA returns digits instead).
    pub fn result_code(&self) -> Option<i64> {
        match self {
            AgiLine::Reply { result, .. } => result.parse().ok(),
            _ => None,
        }
    }
}

/// Parses one reply line (without its line break), except the multi-line 520 form.
pub fn parse_line(line: &str) -> Result<AgiLine, CodecError> {
    if line == "HANGUP" {
        return Ok(AgiLine::Hangup);
    }
    let (code, rest) = line.split_once(' ').unwrap_or((line, ""));
    match code {
        "200" => parse_reply(rest),
        "510" => Ok(AgiLine::InvalidCommand(rest.to_string())),
        "511" => Ok(AgiLine::DeadChannel(rest.to_string())),
        "520" => Ok(AgiLine::Usage(rest.to_string())),
        _ => Err(malformed(format!("unexpected line from Asterisk: {line:?}"))),
    }
}

fn parse_reply(rest: &str) -> Result<AgiLine, CodecError> {
    let after = rest
        .strip_prefix("result=")
        .ok_or_else(|| malformed(format!("200 reply without result=: {rest:?}")))?;
    let (result, mut tail) = after.split_once(' ').unwrap_or((after, ""));
    let mut data = None;
    let trimmed = tail.trim_start();
    if let Some(inner) = trimmed.strip_prefix('(') {
        // The text may itself hold parentheses: it runs to the last `)`.
        let close = inner
            .rfind(')')
            .ok_or_else(|| malformed(format!("unclosed '(' in reply: {rest:?}")))?;
        data = Some(inner[..close].to_string());
        tail = &inner[close + 1..];
    }
    let mut endpos = None;
    let mut extra = Vec::new();
    for token in tail.split_whitespace() {
        let (key, value) = token
            .split_once('=')
            .ok_or_else(|| malformed(format!("expected key=value in reply, got {token:?}")))?;
        if key == "endpos" {
            let n = value.parse().map_err(|_| malformed(format!("bad endpos {value:?}")))?;
            endpos = Some(n);
        } else {
            extra.push((key.to_string(), value.to_string()));
        }
    }
    Ok(AgiLine::Reply {
        code: 200,
        result: result.to_string(),
        data,
        endpos,
        extra,
    })
}

impl Decoder for AgiCodec {
    type Item = AgiLine;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<AgiLine>, CodecError> {
        loop {
            let Some(end) = self.scan.next_line_end(src) else {
                return too_long_or_wait(src);
            };
            let in_usage_block = src.starts_with(b"520-");
            if !in_usage_block {
                self.scan = LineScan::default();
                let line = src.split_to(end + 1);
                return parse_line(line_text(&line)?).map(Some);
            }
            // `520-...` up to a line starting with `520 `: the usage text between them.
            if self.scan.line_start > 0 && src[self.scan.line_start..].starts_with(b"520 ") {
                self.scan = LineScan::default();
                let block = src.split_to(end + 1);
                return decode_usage_block(&block).map(Some);
            }
            self.scan.advance(end);
        }
    }
}

fn too_long_or_wait<T>(src: &BytesMut) -> Result<Option<T>, CodecError> {
    if src.len() > MAX_REPLY_LEN {
        return Err(CodecError::TooLong {
            what: "reply",
            limit: MAX_REPLY_LEN,
        });
    }
    Ok(None)
}

fn line_text(line: &[u8]) -> Result<&str, CodecError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    std::str::from_utf8(line).map_err(|_| malformed("reply line is not UTF-8"))
}

/// A whole `520-` block, its `520 ` line included: the usage text, one string.
fn decode_usage_block(block: &[u8]) -> Result<AgiLine, CodecError> {
    let lines = block
        .split_inclusive(|&b| b == b'\n')
        .map(line_text)
        .collect::<Result<Vec<&str>, _>>()?;
    // The first line is the "Proper usage follows:" header, the last "520 End of ...".
    let usage = lines[1..lines.len() - 1].join("\n");
    Ok(AgiLine::Usage(usage))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The preamble of a real call, in Asterisk's order (protocol notes, section 2.2).
    const REAL_PREAMBLE: &str = "agi_network: yes\n\
        agi_network_script: tts?voice=test\n\
        agi_request: agi://127.0.0.1:4573/tts?voice=test\n\
        agi_channel: Local/s@agi-test-00000005;2\n\
        agi_language: en\n\
        agi_type: Local\n\
        agi_uniqueid: 1795384578.12\n\
        agi_version: 22.10.1\n\
        agi_callerid: unknown\n\
        agi_calleridname: unknown\n\
        agi_callingpres: 67\n\
        agi_callingani2: 0\n\
        agi_callington: 0\n\
        agi_callingtns: 0\n\
        agi_dnid: unknown\n\
        agi_rdnis: unknown\n\
        agi_context: agi-test\n\
        agi_extension: s\n\
        agi_priority: 2\n\
        agi_enhanced: 0.0\n\
        agi_accountcode: \n\
        agi_threadid: 140597005747904\n\
        agi_arg_1: first arg\n\
        agi_arg_2:  second, spaced \n\
        \n";

    fn decode_all<D: Decoder>(dec: &mut D, bytes: &[u8]) -> Result<Vec<D::Item>, D::Error> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(item) = dec.decode(&mut buf)? {
            out.push(item);
        }
        Ok(out)
    }

    #[test]
    fn real_preamble_parses() {
        let mut buf = BytesMut::from(format!("{REAL_PREAMBLE}ANSWER-ish trailing").as_bytes());
        let p = PreambleDecoder::default().decode(&mut buf).unwrap().unwrap();
        assert_eq!(p.network_script, "tts?voice=test");
        assert_eq!(p.request, "agi://127.0.0.1:4573/tts?voice=test");
        assert_eq!(p.channel, "Local/s@agi-test-00000005;2");
        assert_eq!(p.language, "en");
        assert_eq!(p.uniqueid, "1795384578.12");
        assert_eq!(p.args, vec!["first arg".to_string(), " second, spaced ".to_string()]);
        assert_eq!(p.vars["agi_accountcode"], "");
        assert_eq!(p.vars["agi_threadid"], "140597005747904");
        assert_eq!(p.vars.len(), 24);
        // Bytes after the empty line belong to the session, not the preamble.
        assert_eq!(&buf[..], b"ANSWER-ish trailing");
    }

    #[test]
    fn preamble_waits_for_empty_line() {
        let cut = REAL_PREAMBLE.len() - 1;
        let mut buf = BytesMut::from(&REAL_PREAMBLE.as_bytes()[..cut]);
        assert!(PreambleDecoder::default().decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"\n");
        assert!(PreambleDecoder::default().decode(&mut buf).unwrap().is_some());
    }

    #[test]
    fn preamble_tolerates_unknown_names_crlf_and_bare_colon() {
        let text = "agi_request: agi://h/say\r\nagi_future_thing: x: y\r\nagi_accountcode:\r\n\r\n";
        let p = decode_all(&mut PreambleDecoder::default(), text.as_bytes())
            .unwrap()
            .remove(0);
        assert_eq!(p.vars["agi_future_thing"], "x: y");
        assert_eq!(p.vars["agi_accountcode"], "");
        assert_eq!(p.network_script, "");
        assert!(p.args.is_empty());
    }

    #[test]
    fn bad_preambles_are_refused() {
        for bad in [
            "GET / HTTP/1.1\nHost: x\n\n",
            "agi_request agi://h/say\n\n",
            "agi_channel: x\n\n",
            "agi_request: agi://h/say\nagi_arg_2: skipped one\n\n",
            "agi_request: agi://h/say\nagi_arg_x: y\n\n",
        ] {
            assert!(
                decode_all(&mut PreambleDecoder::default(), bad.as_bytes()).is_err(),
                "{bad:?}"
            );
        }
        let endless = "agi_x: y\n".repeat(10_000);
        assert!(matches!(
            PreambleDecoder::default().decode(&mut BytesMut::from(endless.as_bytes())),
            Err(CodecError::TooLong { .. })
        ));
    }

    #[test]
    fn script_query_is_decoded() {
        let s = Script::parse("say?voice=Ana%20Florence&lang=pt&mode=file&escape=12%23&note=a+b&flag").unwrap();
        assert_eq!(s.name, "say");
        assert_eq!(s.param("voice"), Some("Ana Florence"));
        assert_eq!(s.param("lang"), Some("pt"));
        assert_eq!(s.param("mode"), Some("file"));
        assert_eq!(s.param("escape"), Some("12#"));
        assert_eq!(s.param("note"), Some("a b"));
        assert_eq!(s.param("flag"), Some(""));
        assert_eq!(s.param("missing"), None);
        assert_eq!(Script::parse("").unwrap(), Script::default());
        assert_eq!(Script::parse("say").unwrap().params, vec![]);
        assert!(Script::parse("say?voice=%ff").is_err());
    }

    #[test]
    fn commands_are_encoded_with_quoting() {
        let line = |name, args: &[&str]| Command::new(name, args.iter().copied()).to_line().unwrap();
        assert_eq!(line("ANSWER", &[]), "ANSWER\n");
        assert_eq!(
            line("STREAM FILE", &["/var/spool/xttsd/a-1", ""]),
            "STREAM FILE /var/spool/xttsd/a-1 \"\"\n"
        );
        assert_eq!(line("STREAM FILE", &["/x", "12#"]), "STREAM FILE /x 12#\n");
        assert_eq!(
            line("VERBOSE", &["say \"hi\" \\ there", "1"]),
            "VERBOSE \"say \\\"hi\\\" \\\\ there\" 1\n"
        );
        assert_eq!(
            line("SET VARIABLE", &["XTTS_DIGIT", ""]),
            "SET VARIABLE XTTS_DIGIT \"\"\n"
        );
        assert!(Command::new("VERBOSE", ["a\nb"]).to_line().is_err());
        assert!(Command::new("VERBOSE", ["x".repeat(MAX_COMMAND_LEN)])
            .to_line()
            .is_err());
    }

    #[test]
    fn split_args_reads_back_what_quote_arg_writes() {
        assert_eq!(
            split_args("STREAM FILE /tmp/x \"\""),
            vec!["STREAM", "FILE", "/tmp/x", ""]
        );
        assert_eq!(
            split_args("VERBOSE \"hello world\" 1"),
            vec!["VERBOSE", "hello world", "1"]
        );
        assert_eq!(split_args("a\\ b\t c"), vec!["a b", "c"]);
        for arg in ["", "plain", "two words", "q\"uote", "back\\slash", " \\\" "] {
            let line = format!("SET VARIABLE X {}", quote_arg(arg));
            assert_eq!(split_args(&line)[3], arg, "{line}");
        }
    }

    fn reply(result: &str, data: Option<&str>, endpos: Option<i64>) -> AgiLine {
        AgiLine::Reply {
            code: 200,
            result: result.into(),
            data: data.map(Into::into),
            endpos,
            extra: vec![],
        }
    }

    #[test]
    fn replies_from_the_notes_decode() {
        let lines = decode_all(
            &mut AgiCodec::default(),
            b"200 result=0\n200 result=1 (hello world)\n200 result=0 endpos=16000\n200 result=-1 endpos=0\n",
        )
        .unwrap();
        assert_eq!(
            lines,
            vec![
                reply("0", None, None),
                reply("1", Some("hello world"), None),
                reply("0", None, Some(16000)),
                reply("-1", None, Some(0)),
            ]
        );
        assert_eq!(lines[3].result_code(), Some(-1));
    }

    #[test]
    fn reply_variants() {
        let got = decode_all(
            &mut AgiCodec::default(),
            b"200 result=35 endpos=8160\n200 result= (timeout)\n200 result=1 (f(x) = (y)) endpos=7 score=0.9\r\n",
        )
        .unwrap();
        assert_eq!(got[0], reply("35", None, Some(8160)));
        assert_eq!(got[1], reply("", Some("timeout"), None));
        assert_eq!(
            got[2],
            AgiLine::Reply {
                code: 200,
                result: "1".into(),
                data: Some("f(x) = (y)".into()),
                endpos: Some(7),
                extra: vec![("score".into(), "0.9".into())],
            }
        );
    }

    #[test]
    fn hangup_and_error_lines() {
        let got = decode_all(
            &mut AgiCodec::default(),
            b"HANGUP\n511 Command Not Permitted on a dead channel or intercept routine\nHANGUP\n\
              510 Invalid or unknown command\n520 Invalid command syntax.  Proper usage not available.\n",
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                AgiLine::Hangup,
                AgiLine::DeadChannel("Command Not Permitted on a dead channel or intercept routine".into()),
                AgiLine::Hangup,
                AgiLine::InvalidCommand("Invalid or unknown command".into()),
                AgiLine::Usage("Invalid command syntax.  Proper usage not available.".into()),
            ]
        );
    }

    #[test]
    fn multi_line_usage_is_one_item_and_waits_for_its_end() {
        let block = "520-Invalid command syntax.  Proper usage follows:\n \
                     Usage: STREAM FILE <filename> <escape_digits> [sample offset]\n\
                     <para>Send the given file.</para>\n\
                     520 End of proper usage.\n200 result=0\n";
        let cut = block.find("520 End").unwrap();
        let mut buf = BytesMut::from(&block.as_bytes()[..cut]);
        assert_eq!(AgiCodec::default().decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(&block.as_bytes()[cut..]);
        let got = decode_all(&mut AgiCodec::default(), &buf).unwrap();
        assert_eq!(
            got,
            vec![
                AgiLine::Usage(
                    " Usage: STREAM FILE <filename> <escape_digits> [sample offset]\n<para>Send the given file.</para>"
                        .into()
                ),
                reply("0", None, None),
            ]
        );
    }

    #[test]
    fn garbage_replies_are_errors() {
        for bad in [
            "hello\n",
            "200 res=0\n",
            "200 result=0 (open\n",
            "200 result=0 endpos=x\n",
            "200 result=0 junk\n",
        ] {
            assert!(decode_all(&mut AgiCodec::default(), bad.as_bytes()).is_err(), "{bad:?}");
        }
        let long = vec![b'2'; MAX_REPLY_LEN + 1];
        assert!(decode_all(&mut AgiCodec::default(), &long).is_err());
    }

    /// A peer sending one byte at a time must cost linear time: the decoders remember how
    /// far they have looked (a rescan of 60 KiB per byte took seconds).
    #[test]
    fn trickled_input_is_not_rescanned() {
        let started = std::time::Instant::now();
        let mut preamble = PreambleDecoder::default();
        let mut buf = BytesMut::new();
        let long_line = format!("agi_arg_1: {}\n", "x".repeat(60_000));
        for &b in long_line.as_bytes() {
            buf.put_u8(b);
            assert!(preamble.decode(&mut buf).unwrap().is_none());
        }
        let mut decoded = None;
        for &b in b"agi_request: agi://x/say\nagi_network_script: say\n\n" {
            buf.put_u8(b);
            if let Some(p) = preamble.decode(&mut buf).unwrap() {
                decoded = Some(p);
            }
        }
        assert_eq!(decoded.expect("the preamble was decoded").args.len(), 1);
        assert!(buf.is_empty());
        let mut replies = AgiCodec::default();
        let mut block = String::from("520-Invalid command syntax.  Proper usage follows:\n");
        for _ in 0..1200 {
            block.push_str(" Usage: STREAM FILE <filename> <escape_digits>\n");
        }
        block.push_str("520 End of proper usage.\n200 result=0\n");
        let mut items = vec![];
        for &b in block.as_bytes() {
            buf.put_u8(b);
            if let Some(item) = replies.decode(&mut buf).unwrap() {
                items.push(item);
            }
        }
        assert_eq!(items.len(), 2, "{items:?}");
        assert!(matches!(&items[0], AgiLine::Usage(u) if u.lines().count() == 1200));
        let elapsed = started.elapsed();
        assert!(elapsed < std::time::Duration::from_millis(500), "took {elapsed:?}");
    }
}
