//! The FastAGI server driven as Asterisk drives it: the preamble, then replies to each
//! command, byte for byte as in the protocol notes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use uuid::Uuid;
use xttsd::calls::PlayOutcome;
use xttsd::config::{AgiMode, Config, SpoolFormat};
use xttsd::engine::{Engine, SpeechBackend, SpeechRequest};
use xttsd::serve::{Services, SharedServices};

const RATE: u32 = 24000;
/// Audio the test backend makes per character of text: 10 ms.
const SAMPLES_PER_CHAR: usize = 240;
const STEP: Duration = Duration::from_secs(5);

/// What the backend saw.
#[derive(Default, Debug)]
struct Log {
    started: Vec<SpeechRequest>,
    finished: usize,
    cancelled: usize,
    /// Text containing `WAIT` keeps the backend busy until this is set.
    released: bool,
}

/// A 440 Hz tone, 10 ms per character, in chunks of varying size with a delay between them;
/// text containing `FAIL` fails half-way.
struct ToneBackend {
    log: Arc<Mutex<Log>>,
    chunk_delay: Duration,
}

impl SpeechBackend for ToneBackend {
    fn sample_rate(&self) -> u32 {
        RATE
    }

    fn speak(&mut self, req: &SpeechRequest, emit: &mut dyn FnMut(Vec<f32>) -> bool) -> Result<()> {
        self.log.lock().unwrap().started.push(req.clone());
        while req.text.contains("WAIT") && !self.log.lock().unwrap().released {
            std::thread::sleep(Duration::from_millis(5));
        }
        let total = req.text.chars().count() * SAMPLES_PER_CHAR;
        let sizes = [240usize, 960, 480, 2400];
        let mut pos = 0;
        let mut i = 0;
        while pos < total {
            if req.text.contains("FAIL") && pos > 0 {
                anyhow::bail!("backend failure on purpose");
            }
            std::thread::sleep(self.chunk_delay);
            let n = sizes[i % sizes.len()].min(total - pos);
            let chunk = (pos..pos + n)
                .map(|k| 0.5 * (2.0 * std::f32::consts::PI * 440.0 * k as f32 / RATE as f32).sin())
                .collect();
            if !emit(chunk) {
                self.log.lock().unwrap().cancelled += 1;
                return Ok(());
            }
            pos += n;
            i += 1;
        }
        self.log.lock().unwrap().finished += 1;
        Ok(())
    }
}

fn validate(req: &SpeechRequest) -> Result<()> {
    anyhow::ensure!(
        ["en", "de"].contains(&req.lang.as_str()),
        "unknown language '{}'",
        req.lang
    );
    anyhow::ensure!(
        ["default", "anna"].contains(&req.voice.as_str()),
        "unknown voice '{}'",
        req.voice
    );
    anyhow::ensure!(!req.text.is_empty(), "empty text");
    Ok(())
}

struct Daemon {
    addr: std::net::SocketAddr,
    services: SharedServices,
    log: Arc<Mutex<Log>>,
    _spool: tempfile::TempDir,
}

async fn start(mode: &str, chunk_delay: Duration) -> Daemon {
    start_with(mode, chunk_delay, |_| {}).await
}

async fn start_with(mode: &str, chunk_delay: Duration, adjust: impl FnOnce(&mut Config)) -> Daemon {
    let spool = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.agi.mode = match mode {
        "file" => AgiMode::File,
        _ => AgiMode::Stream,
    };
    config.agi.spool_dir = spool.path().join("spool");
    // Every request reaches the engine (the prompt cache has its own tests).
    config.prompts.cache_dir = PathBuf::new();
    adjust(&mut config);
    let log = Arc::new(Mutex::new(Log::default()));
    let backend = ToneBackend {
        log: log.clone(),
        chunk_delay,
    };
    let services = Services::new(
        config.clone(),
        Engine::start(backend, validate, config.engine.queue_limit.min(8)),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(xttsd::agi::serve(listener, services.agi()));
    Daemon {
        addr,
        services,
        log,
        _spool: spool,
    }
}

impl Daemon {
    fn spool_dir(&self) -> PathBuf {
        self.services.config.agi.spool_dir.clone()
    }

    /// Waits until the spool directory holds no file (deletion after an abort is async).
    async fn assert_spool_empties(&self) {
        let dir = self.spool_dir();
        for _ in 0..100 {
            if files_in(&dir).is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("spool files left behind: {:?}", files_in(&dir));
    }
}

impl Daemon {
    /// Waits (bounded) until the backend's log satisfies `cond`.
    async fn wait_for(&self, what: &str, cond: impl Fn(&Log) -> bool) {
        for _ in 0..250 {
            if cond(&self.log.lock().unwrap()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("backend never got to: {what}: {:?}", self.log.lock().unwrap());
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().file_name().into_string().unwrap()).collect(),
        Err(_) => vec![],
    }
}

/// Asterisk's side of one FastAGI connection.
struct Asterisk {
    lines: BufReader<OwnedReadHalf>,
    out: OwnedWriteHalf,
}

/// The preamble as Asterisk 22 writes it, in its order.
fn preamble(script: &str, args: &[&str]) -> String {
    let mut p = format!(
        "agi_network: yes\nagi_network_script: {script}\nagi_request: agi://127.0.0.1:4573/{script}\n\
         agi_channel: PJSIP/alice-00000001\nagi_language: en\nagi_type: PJSIP\nagi_uniqueid: 1795384578.12\n\
         agi_version: 22.10.1\nagi_callerid: 100\nagi_calleridname: Alice\nagi_callingpres: 0\n\
         agi_callingani2: 0\nagi_callington: 0\nagi_callingtns: 0\nagi_dnid: 9860\nagi_rdnis: unknown\n\
         agi_context: xttsd\nagi_extension: 9860\nagi_priority: 2\nagi_enhanced: 0.0\nagi_accountcode: \n\
         agi_threadid: 140597005747904\n"
    );
    for (i, a) in args.iter().enumerate() {
        p.push_str(&format!("agi_arg_{}: {a}\n", i + 1));
    }
    p.push('\n');
    p
}

impl Asterisk {
    async fn call(daemon: &Daemon, script: &str, args: &[&str]) -> Asterisk {
        Self::raw(daemon, &preamble(script, args)).await
    }

    async fn raw(daemon: &Daemon, first_bytes: &str) -> Asterisk {
        let stream = TcpStream::connect(daemon.addr).await.unwrap();
        let (r, mut w) = stream.into_split();
        w.write_all(first_bytes.as_bytes()).await.unwrap();
        Asterisk {
            lines: BufReader::new(r),
            out: w,
        }
    }

    /// The next command line, without its LF; None at EOF.
    async fn next(&mut self) -> Option<String> {
        let mut line = String::new();
        let n = timeout(STEP, self.lines.read_line(&mut line))
            .await
            .expect("daemon silent")
            .unwrap();
        if n == 0 {
            return None;
        }
        assert!(line.ends_with('\n'), "command not LF-terminated: {line:?}");
        line.pop();
        Some(line)
    }

    async fn expect(&mut self, want: &str) {
        assert_eq!(self.next().await.as_deref(), Some(want));
    }

    async fn send(&mut self, line: &str) {
        self.out.write_all(line.as_bytes()).await.unwrap();
    }

    /// Answers SET VARIABLE lines (and a VERBOSE before them) and returns the variables,
    /// until the daemon closes the connection.
    async fn results(&mut self) -> (Vec<(String, String)>, Option<String>) {
        let mut vars = vec![];
        let mut verbose = None;
        for _ in 0..10 {
            let Some(line) = self.next().await else {
                return (vars, verbose);
            };
            let words = xttsd::agi::codec::split_args(&line);
            match (words[0].as_str(), words.get(1).map(String::as_str)) {
                ("SET", Some("VARIABLE")) => vars.push((words[2].clone(), words[3].clone())),
                ("VERBOSE", _) => verbose = Some(words[1].clone()),
                _ => panic!("unexpected command {line:?}"),
            }
            self.send("200 result=1\n").await;
        }
        panic!("too many commands")
    }

    async fn assert_closed(&mut self) {
        assert_eq!(self.next().await, None, "daemon should have closed the connection");
    }
}

fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The file a STREAM FILE line names, checked to be an absolute path in the spool dir.
fn streamed_path(daemon: &Daemon, line: &str, command: &str, escape: &str) -> PathBuf {
    let words = xttsd::agi::codec::split_args(line);
    let n = command.split(' ').count();
    assert_eq!(words[..n].join(" "), command, "{line}");
    assert_eq!(words.len(), n + 2, "{line}");
    assert_eq!(words[n + 1], escape, "{line}");
    let stem = PathBuf::from(&words[n]);
    assert_eq!(stem.parent(), Some(daemon.spool_dir().as_path()));
    assert!(stem.extension().is_none(), "STREAM FILE takes no extension: {line}");
    stem
}

#[tokio::test]
async fn file_mode_plays_sentence_files_in_order_and_reports_success() {
    let d = start("stream", Duration::from_millis(1)).await;
    let texts = ["Good morning.", "This is a test!", "Bye"];
    // Asterisk splits the AGI() arguments at commas; the text is rebuilt with ", ".
    let mut a = Asterisk::call(
        &d,
        "say?mode=file&lang=de&voice=anna&speed=0.8&seed=42&top_k=20",
        &["Good morning. This is a test! Bye"],
    )
    .await;
    a.expect("ANSWER").await;
    a.send("200 result=0\n").await;
    for text in texts {
        let line = a.next().await.unwrap();
        let stem = streamed_path(&d, &line, "STREAM FILE", "");
        assert!(line.ends_with(" \"\""), "empty escape digits are sent as \"\": {line}");
        let audio = std::fs::read(stem.with_extension("ulaw")).expect("the file exists while it plays");
        // 10 ms per character at 8 kHz µ-law: 80 bytes per character, a tone, not silence.
        assert_eq!(audio.len(), text.chars().count() * 80, "{text}");
        assert!(audio.iter().filter(|&&b| b != 0xFF).count() > audio.len() / 2);
        a.send("200 result=0 endpos=16000\n").await;
    }
    let (got, verbose) = a.results().await;
    assert_eq!(verbose, None);
    assert_eq!(
        got,
        vars(&[
            ("XTTS_STATUS", "SUCCESS"),
            ("XTTS_DIGIT", ""),
            ("XTTS_DURATION", "6000"),
            ("XTTS_ERROR", ""),
            ("XTTS_REASON", ""),
            ("XTTS_ENGINE", "xtts"),
        ])
    );
    d.assert_spool_empties().await;
    let log = d.log.lock().unwrap();
    let said: Vec<_> = log.started.iter().map(|r| r.text.as_str()).collect();
    assert_eq!(said, texts);
    assert!(log.started.iter().all(|r| r.lang == "de" && r.voice == "anna"));
    let options = &log.started[0].options;
    assert_eq!(
        (options.speed, options.seed, options.top_k),
        (Some(0.8), Some(42), Some(20))
    );
    assert_eq!((options.temperature, options.greedy), (None, None));
}

#[tokio::test]
async fn comma_split_arguments_are_joined_and_defaults_apply() {
    let d = start("file", Duration::ZERO).await;
    let mut a = Asterisk::call(&d, "say", &["Hello", " world"]).await;
    a.expect("ANSWER").await;
    a.send("200 result=0\n").await;
    let line = a.next().await.unwrap();
    streamed_path(&d, &line, "STREAM FILE", "");
    a.send("200 result=0 endpos=800\n").await;
    let (got, _) = a.results().await;
    assert_eq!(got[0], ("XTTS_STATUS".into(), "SUCCESS".into()));
    assert_eq!(got[2], ("XTTS_DURATION".into(), "100".into()));
    let log = d.log.lock().unwrap();
    assert_eq!(log.started[0].text, "Hello, world");
    assert_eq!(
        (log.started[0].lang.as_str(), log.started[0].voice.as_str()),
        ("en", "default")
    );
}

#[tokio::test]
async fn escape_digit_stops_playback_and_synthesis() {
    let d = start("file", Duration::from_millis(20)).await;
    let long = "This second sentence is long enough to still be synthesising. ".repeat(4);
    let text = format!("First one. {long}");
    let mut a = Asterisk::call(&d, "say?mode=file&escape=12%23", &[&text]).await;
    a.expect("ANSWER").await;
    a.send("200 result=0\n").await;
    let line = a.next().await.unwrap();
    streamed_path(&d, &line, "STREAM FILE", "12#");
    d.wait_for("second sentence started", |log| log.started.len() == 2)
        .await;
    // Caller pressed 2 (ASCII 50) after 500 ms.
    a.send("200 result=50 endpos=4000\n").await;
    let (got, _) = a.results().await;
    assert_eq!(
        got,
        vars(&[
            ("XTTS_STATUS", "INTERRUPTED"),
            ("XTTS_DIGIT", "2"),
            ("XTTS_DURATION", "500"),
            ("XTTS_ERROR", ""),
            ("XTTS_REASON", ""),
            ("XTTS_ENGINE", "xtts"),
        ])
    );
    d.assert_spool_empties().await;
    // The remaining sentences are never played; synthesis in progress was cancelled.
    d.wait_for("second sentence cancelled", |log| log.cancelled == 1).await;
    assert_eq!(d.log.lock().unwrap().finished, 1);
}

#[tokio::test]
async fn control_stream_file_endpos_is_milliseconds_and_sln16_files() {
    let d = start_with("file", Duration::ZERO, |c| c.agi.file_format = SpoolFormat::Sln16).await;
    let mut a = Asterisk::call(&d, "say?control=1", &["One. Two."]).await;
    a.expect("ANSWER").await;
    a.send("200 result=0\n").await;
    for text in ["One.", "Two."] {
        let line = a.next().await.unwrap();
        let stem = streamed_path(&d, &line, "CONTROL STREAM FILE", "");
        let audio = std::fs::read(stem.with_extension("sln16")).unwrap();
        assert_eq!(audio.len(), text.len() * 160 * 2);
        a.send("200 result=0 endpos=1500\n").await;
    }
    let (got, _) = a.results().await;
    assert_eq!(got[2], ("XTTS_DURATION".into(), "3000".into()));
    d.assert_spool_empties().await;
}

#[tokio::test]
async fn hangup_mid_speech_stops_synthesis_removes_files_and_closes() {
    let d = start("file", Duration::from_millis(20)).await;
    let long = "A long second sentence that keeps the engine busy for a while. ".repeat(4);
    let text = format!("Short. {long} Third.");
    let mut a = Asterisk::call(&d, "say?mode=file", &[&text]).await;
    a.expect("ANSWER").await;
    a.send("200 result=0\n").await;
    let line = a.next().await.unwrap();
    streamed_path(&d, &line, "STREAM FILE", "");
    d.wait_for("second sentence started", |log| log.started.len() == 2)
        .await;
    // The caller hangs up during playback: HANGUP comes before the reply.
    a.send("HANGUP\n200 result=-1 endpos=1200\n").await;
    // Reported as a hangup (for the dialplan's h extension), with what was heard.
    let (got, verbose) = a.results().await;
    assert_eq!(verbose, None);
    assert_eq!(
        got,
        vars(&[
            ("XTTS_STATUS", "HANGUP"),
            ("XTTS_DIGIT", ""),
            ("XTTS_DURATION", "150"),
            ("XTTS_ERROR", ""),
            ("XTTS_REASON", ""),
            ("XTTS_ENGINE", "xtts"),
        ])
    );
    d.assert_spool_empties().await;
    d.wait_for("second sentence cancelled", |log| log.cancelled == 1).await;
    let log = d.log.lock().unwrap();
    assert_eq!(log.cancelled, 1, "{log:?}");
    assert!(!log.started.iter().any(|r| r.text == "Third."), "{log:?}");
}

#[tokio::test]
async fn hangup_while_waiting_for_the_first_sentence() {
    let d = start("file", Duration::from_millis(30)).await;
    let long = "Nothing is ready yet because this takes time to make. ".repeat(4);
    let mut a = Asterisk::call(&d, "say?mode=file", &[&long]).await;
    a.expect("ANSWER").await;
    a.send("200 result=0\n").await;
    d.wait_for("first sentence started", |log| log.started.len() == 1).await;
    a.send("HANGUP\n").await;
    let (got, _) = a.results().await;
    assert_eq!(got[0], ("XTTS_STATUS".into(), "HANGUP".into()));
    d.wait_for("first sentence cancelled", |log| log.cancelled == 1).await;
    d.assert_spool_empties().await;
}

#[tokio::test]
async fn dead_channel_reply_reports_a_hangup() {
    let d = start("file", Duration::ZERO).await;
    let mut a = Asterisk::call(&d, "say", &["Hi."]).await;
    a.expect("ANSWER").await;
    a.send("511 Command Not Permitted on a dead channel or intercept routine\n")
        .await;
    let (got, _) = a.results().await;
    assert_eq!(got[0], ("XTTS_STATUS".into(), "HANGUP".into()));
    assert!(d.log.lock().unwrap().started.is_empty());
}

#[tokio::test]
async fn refused_commands_report_failed() {
    for refusal in [
        "510 Invalid or unknown command\n",
        "520 Invalid command syntax.  Proper usage not available.\n",
        "520-Invalid command syntax.  Proper usage follows:\n Usage: STREAM FILE <filename>\n520 End of proper usage.\n",
    ] {
        let d = start("file", Duration::ZERO).await;
        let mut a = Asterisk::call(&d, "say", &["Hi."]).await;
        a.expect("ANSWER").await;
        a.send("200 result=0\n").await;
        let line = a.next().await.unwrap();
        streamed_path(&d, &line, "STREAM FILE", "");
        a.send(refusal).await;
        let (got, verbose) = a.results().await;
        let code = &refusal[..3];
        assert!(verbose.unwrap().contains(code), "{refusal}");
        assert_eq!(got[0], ("XTTS_STATUS".into(), "FAILED".into()));
        assert!(got[3].1.contains("STREAM FILE"), "{got:?}");
        d.assert_spool_empties().await;
    }
}

#[tokio::test]
async fn missing_file_reply_is_failed() {
    let d = start("file", Duration::ZERO).await;
    let mut a = Asterisk::call(&d, "say", &["Hi."]).await;
    a.expect("ANSWER").await;
    a.send("200 result=0\n").await;
    a.next().await.unwrap();
    a.send("200 result=-1 endpos=0\n").await;
    let (got, verbose) = a.results().await;
    assert!(verbose.is_some());
    assert_eq!(got[0].1, "FAILED");
}

#[tokio::test]
async fn synthesis_failure_is_reported() {
    let d = start("file", Duration::ZERO).await;
    let mut a = Asterisk::call(&d, "say", &["Please FAIL now"]).await;
    a.expect("ANSWER").await;
    a.send("200 result=0\n").await;
    let (got, verbose) = a.results().await;
    assert!(verbose.unwrap().contains("backend failure on purpose"));
    assert_eq!(got[0].1, "FAILED");
    d.assert_spool_empties().await;
}

#[tokio::test]
async fn unknown_script_language_voice_and_parameters_fail_before_answer() {
    let cases = [
        ("speak?voice=anna", "unknown AGI script 'speak'"),
        ("", "unknown AGI script ''"),
        ("say?lang=xx", "unknown language 'xx'"),
        ("say?voice=nobody", "unknown voice 'nobody'"),
        ("say?lnag=de", "unknown parameter 'lnag'"),
        ("say?mode=tape", "mode must be stream or file"),
        ("say?escape=1x", "escape digit 'x'"),
        ("say?speed=fast", "speed: 'fast' is not a valid value"),
        ("say?greedy=maybe", "greedy: 'maybe'"),
    ];
    let d = start("stream", Duration::ZERO).await;
    for (script, reason) in cases {
        let mut a = Asterisk::call(&d, script, &["Hello."]).await;
        // No ANSWER: the reason goes to the console, the result to the dialplan.
        let (got, verbose) = a.results().await;
        let verbose = verbose.unwrap_or_default();
        assert!(verbose.starts_with("xttsd: ") && verbose.contains(reason), "{verbose}");
        assert_eq!(got[0], ("XTTS_STATUS".into(), "FAILED".into()), "{script}");
        assert!(got[3].1.contains(reason), "{got:?}");
    }
    let mut a = Asterisk::call(&d, "say", &[]).await;
    let (got, _) = a.results().await;
    assert!(got[3].1.contains("no text"), "{got:?}");
    assert!(d.log.lock().unwrap().started.is_empty());
}

#[tokio::test]
async fn bad_preamble_closes_and_queues_nothing() {
    let d = start("stream", Duration::ZERO).await;
    for junk in [
        "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "agi_network: yes\nagi_arg_1: no request line\n\n",
        "agi_request: agi://x/say\nagi_arg_2: gap\n\n",
    ] {
        let mut a = Asterisk::raw(&d, junk).await;
        a.assert_closed().await;
    }
    // A peer that stops half-way through the preamble.
    let mut a = Asterisk::raw(&d, "agi_network: yes\nagi_request: agi://x/say\n").await;
    a.out.shutdown().await.unwrap();
    a.assert_closed().await;
    assert!(d.log.lock().unwrap().started.is_empty());
}

#[tokio::test]
async fn stream_mode_parks_the_request_and_execs_audiosocket() {
    let d = start("stream", Duration::ZERO).await;
    let mut a = Asterisk::call(&d, "say?voice=anna&escape=5", &["Streamed words"]).await;
    a.expect("ANSWER").await;
    a.send("200 result=0\n").await;
    let line = a.next().await.unwrap();
    let words = xttsd::agi::codec::split_args(&line);
    assert_eq!(words[..2], ["EXEC", "AudioSocket"], "{line}");
    assert_eq!(words.len(), 3, "{line}");
    let (uuid, address) = words[2].split_once(',').unwrap();
    assert_eq!(address, "127.0.0.1:9092");
    let uuid = Uuid::parse_str(uuid).unwrap();
    // What the AudioSocket server does when Asterisk connects with that UUID.
    let mut inbox = d.services.calls.attach(uuid).unwrap();
    assert!(inbox.had_pending);
    let job = inbox.jobs.try_recv().unwrap();
    assert_eq!(job.request.text, "Streamed words");
    assert_eq!(job.request.voice, "anna");
    assert_eq!(job.escape_digits, "5");
    assert!(job.hangup_after);
    job.done
        .unwrap()
        .send(PlayOutcome {
            status: "INTERRUPTED",
            digit: Some('5'),
            played_ms: 1234,
            failure: None,
            engine: Some("builtin"),
        })
        .unwrap();
    a.send("200 result=0\n").await;
    let (got, _) = a.results().await;
    assert_eq!(
        got,
        vars(&[
            ("XTTS_STATUS", "INTERRUPTED"),
            ("XTTS_DIGIT", "5"),
            ("XTTS_DURATION", "1234"),
            ("XTTS_ERROR", ""),
            ("XTTS_REASON", ""),
            ("XTTS_ENGINE", "builtin"),
        ])
    );
    // The engine itself is the AudioSocket side's business.
    assert!(d.log.lock().unwrap().started.is_empty());
}

#[tokio::test]
async fn stream_mode_audiosocket_failure_and_hangup() {
    let d = start("stream", Duration::ZERO).await;
    let mut a = Asterisk::call(&d, "say", &["Hi"]).await;
    a.expect("ANSWER").await;
    a.send("200 result=0\n").await;
    let uuid = exec_uuid(&a.next().await.unwrap());
    a.send("200 result=-1\n").await;
    let (got, verbose) = a.results().await;
    assert!(verbose.unwrap().contains("AudioSocket"));
    assert_eq!(got[0].1, "FAILED");
    // The speech parked for that call is gone: a late connect would find nothing.
    assert!(!d.services.calls.attach(uuid).unwrap().had_pending);

    // Caller hangs up during the AudioSocket session: -1, then HANGUP.
    let mut a = Asterisk::call(&d, "say", &["Hi"]).await;
    a.expect("ANSWER").await;
    a.send("200 result=0\n").await;
    let uuid = exec_uuid(&a.next().await.unwrap());
    a.send("HANGUP\n200 result=-1\n").await;
    let (got, verbose) = a.results().await;
    assert_eq!(verbose, None, "a hangup is no failure");
    assert_eq!(got[0], ("XTTS_STATUS".into(), "HANGUP".into()));
    assert!(!d.services.calls.attach(uuid).unwrap().had_pending);

    // No AudioSocket application: -2.
    let mut a = Asterisk::call(&d, "say", &["Hi"]).await;
    a.expect("ANSWER").await;
    a.send("200 result=0\n").await;
    let uuid = exec_uuid(&a.next().await.unwrap());
    a.send("200 result=-2\n").await;
    let (got, _) = a.results().await;
    assert!(got[3].1.contains("app_audiosocket"), "{got:?}");
    assert!(!d.services.calls.attach(uuid).unwrap().had_pending);
    assert!(d.log.lock().unwrap().started.is_empty());
}

/// The call UUID of an `EXEC AudioSocket UUID,HOST:PORT` line.
fn exec_uuid(line: &str) -> Uuid {
    let words = xttsd::agi::codec::split_args(line);
    assert_eq!(words[..2], ["EXEC", "AudioSocket"], "{line}");
    Uuid::parse_str(words[2].split_once(',').unwrap().0).unwrap()
}

fn client(d: &Daemon, script: &str, text: &str) -> xttsd::client::agi::CallOptions {
    xttsd::client::agi::CallOptions {
        url: format!("agi://{}/{script}", d.addr),
        text: text.into(),
        dtmf: String::new(),
        hangup_after: None,
    }
}

async fn run_client(opts: &xttsd::client::agi::CallOptions) -> xttsd::client::agi::CallRecord {
    timeout(Duration::from_secs(10), xttsd::client::agi::call(opts))
        .await
        .expect("call did not end")
        .unwrap()
}

#[tokio::test]
async fn call_client_plays_file_mode_end_to_end() {
    let d = start("stream", Duration::ZERO).await;
    let record = run_client(&client(&d, "say?mode=file", "One. Two, three.")).await;
    assert_eq!(record.commands[0], "ANSWER");
    assert_eq!(
        record.variables,
        vars(&[
            ("XTTS_STATUS", "SUCCESS"),
            ("XTTS_DIGIT", ""),
            ("XTTS_DURATION", "150"),
            ("XTTS_ERROR", ""),
            ("XTTS_REASON", ""),
            ("XTTS_ENGINE", "xtts"),
        ])
    );
    // 4 + 11 characters of 10 ms, heard at 8 kHz in 20 ms frames (the last one of a file
    // may be short): 2 + 6 frames.
    assert_eq!(record.audio.len(), 15 * 80);
    assert_eq!(record.arrivals.len(), 8);
    d.assert_spool_empties().await;
}

#[tokio::test]
async fn call_client_dtmf_escapes_and_hangup_ends_the_session() {
    let d = start("file", Duration::ZERO).await;
    let text = "This sentence lasts well beyond half a second of audio.";
    let mut opts = client(&d, "say?escape=5", text);
    opts.dtmf = "5".into();
    let record = run_client(&opts).await;
    assert_eq!(record.variables[0].1, "INTERRUPTED");
    assert_eq!(record.variables[1].1, "5");
    let ms: u64 = record.variables[2].1.parse().unwrap();
    assert!((480..=560).contains(&ms), "{ms}");

    let mut opts = client(&d, "say", text);
    opts.hangup_after = Some(Duration::from_millis(300));
    let record = run_client(&opts).await;
    assert_eq!(record.variables[0], ("XTTS_STATUS".into(), "HANGUP".into()));
    assert!(record.audio.len() < text.len() * 80);
    d.assert_spool_empties().await;
}

/// The daemon with both servers: EXEC AudioSocket points at its own AudioSocket listener.
async fn start_streaming(chunk_delay: Duration) -> Daemon {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let audiosocket = listener.local_addr().unwrap().to_string();
    let d = start_with("stream", chunk_delay, |c| c.agi.audiosocket_address = audiosocket).await;
    tokio::spawn(xttsd::audiosocket::serve(listener, d.services.audiosocket()));
    d
}

/// Level of the tone the backend makes, as the audio path delivers it at the default
/// -3 dBFS peak setting.
fn expected_tone_peak() -> f32 {
    0.5 * 32767.0 * 10f32.powf(-3.0 / 20.0)
}

#[tokio::test]
async fn stream_mode_end_to_end_through_the_audiosocket_server() {
    let d = start_streaming(Duration::from_millis(2)).await;
    // 30 characters: 300 ms of tone.
    let text = "Streaming through AudioSocket.";
    let record = run_client(&client(&d, "say", text)).await;
    assert_eq!(record.commands[0], "ANSWER");
    assert!(
        record.commands[1].starts_with("EXEC AudioSocket "),
        "{:?}",
        record.commands
    );
    let ms: u64 = record.variables[2].1.parse().unwrap();
    assert_eq!(record.variables[0], ("XTTS_STATUS".into(), "SUCCESS".into()));
    assert_eq!(record.variables[1], ("XTTS_DIGIT".into(), "".into()));
    // The speech rounded up to whole 20 ms frames.
    assert!((300..=320).contains(&ms), "XTTS_DURATION {ms}");
    assert_eq!(record.variables[3], ("XTTS_ERROR".into(), "".into()));

    // All of it was heard, at the configured level, paced in real time.
    let pacing = record.pacing();
    assert!(
        (15..=16).contains(&pacing.voiced_frames),
        "speech frames heard: {}",
        pacing.voiced_frames
    );
    assert_eq!(pacing.rates.iter().copied().collect::<Vec<_>>(), vec![8000]);
    assert_eq!(pacing.frame_sizes.keys().copied().collect::<Vec<_>>(), vec![320]);
    assert!(pacing.max_lead_ms <= 40.0, "frames ran ahead of real time:\n{pacing}");
    let peak = record.audio.iter().map(|s| s.unsigned_abs() as f32).fold(0.0, f32::max);
    let want = expected_tone_peak();
    assert!((peak - want).abs() < want * 0.05, "peak {peak}, want {want}");
    {
        let log = d.log.lock().unwrap();
        assert_eq!(log.started.len(), 1);
        assert_eq!(log.started[0].text, text);
        assert_eq!((log.finished, log.cancelled), (1, 0));
    }
    // The AudioSocket session ended with the hangup message and left the registry.
    let uuid = exec_uuid(&record.commands[1]);
    for _ in 0..100 {
        if !d.services.calls.is_live(&uuid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!d.services.calls.is_live(&uuid), "call {uuid} still attached");
}

#[tokio::test]
async fn stream_mode_escape_digit_interrupts_and_stops_synthesis() {
    let d = start_streaming(Duration::from_millis(20)).await;
    // 3 s of speech that takes well over a second to make.
    let text = "A long announcement that the caller will cut short. ".repeat(6);
    let mut opts = client(&d, "say?escape=59", &text);
    opts.dtmf = "9".into();
    let record = run_client(&opts).await;
    assert_eq!(record.variables[0], ("XTTS_STATUS".into(), "INTERRUPTED".into()));
    assert_eq!(record.variables[1], ("XTTS_DIGIT".into(), "9".into()));
    let ms: u64 = record.variables[2].1.parse().unwrap();
    // The digit goes out at the first speech frame; what was played before it counts.
    assert!(ms < 1000, "XTTS_DURATION {ms}: playback was not cut short");
    assert!(record.pacing().voiced_frames < 50);
    d.wait_for("synthesis cancelled", |log| log.cancelled == 1).await;
    assert_eq!(d.log.lock().unwrap().finished, 0);
}

#[tokio::test]
async fn stream_mode_caller_hangup_cancels_synthesis() {
    let d = start_streaming(Duration::from_millis(20)).await;
    let text = "This announcement is far longer than the caller is willing to listen. ".repeat(5);
    let mut opts = client(&d, "say", &text);
    opts.hangup_after = Some(Duration::from_millis(400));
    let record = run_client(&opts).await;
    // Reported as a hangup, not a failure, with what was heard.
    assert_eq!(record.variables[0], ("XTTS_STATUS".into(), "HANGUP".into()));
    assert_eq!(record.variables[3], ("XTTS_ERROR".into(), "".into()));
    let ms: u64 = record.variables[2].1.parse().unwrap();
    assert!(ms > 0 && ms < 600, "XTTS_DURATION {ms}");
    assert!(
        record.pacing().voiced_frames > 0,
        "some speech was heard before the hangup"
    );
    assert!(record.pacing().voiced_frames < 30);
    d.wait_for("synthesis cancelled", |log| log.cancelled == 1).await;
    assert_eq!(d.log.lock().unwrap().finished, 0);
}

#[tokio::test]
async fn failures_carry_a_reason_and_a_message_in_both_modes() {
    // Stream mode, synthesis fails on the AudioSocket side: the message reaches XTTS_ERROR.
    let d = start_streaming(Duration::ZERO).await;
    let record = run_client(&client(&d, "say", "Please FAIL now")).await;
    let get = |name: &str| {
        record
            .variables
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("XTTS_STATUS"), Some("FAILED"), "{:?}", record.variables);
    assert_eq!(get("XTTS_REASON"), Some("ENGINE"));
    assert!(
        get("XTTS_ERROR").unwrap().contains("backend failure on purpose"),
        "{:?}",
        record.variables
    );

    // File mode, same failure.
    let record = run_client(&client(&d, "say?mode=file", "Please FAIL now")).await;
    let get = |name: &str| {
        record
            .variables
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(
        (get("XTTS_STATUS"), get("XTTS_REASON")),
        (Some("FAILED"), Some("ENGINE"))
    );

    // Too much speech waiting: BUSY, with the reason.
    let d = start_with("stream", Duration::ZERO, |c| c.limits.max_pending_jobs = 1).await;
    let (tx, _rx) = tokio::sync::oneshot::channel();
    let parked = xttsd::calls::SpeakJob {
        request: SpeechRequest {
            text: "x".into(),
            lang: "en".into(),
            voice: "default".into(),
            options: Default::default(),
        },
        escape_digits: String::new(),
        hangup_after: true,
        done: Some(tx),
    };
    d.services.calls.enqueue(Uuid::new_v4(), parked).unwrap();
    let mut a = Asterisk::call(&d, "say", &["Hi"]).await;
    a.expect("ANSWER").await;
    a.send("200 result=0\n").await;
    let (got, verbose) = a.results().await;
    assert!(verbose.unwrap().contains("waiting"));
    assert_eq!(got[0].1, "FAILED");
    assert_eq!(got[4], ("XTTS_REASON".into(), "BUSY".into()));
}

#[tokio::test]
async fn bad_requests_are_invalid_and_voices_must_be_names() {
    let d = start_with("stream", Duration::ZERO, |c| c.limits.max_text_chars = 20).await;
    for (script, args, reason) in [
        ("say?voice=..", vec!["Hello."], "not a path"),
        ("say?voice=%2Fetc%2Fpasswd", vec!["Hello."], "not a path"),
        ("say?lang=xx", vec!["Hello."], "unknown language"),
        (
            "say",
            vec!["This text is longer than twenty characters."],
            "limits.max_text_chars",
        ),
    ] {
        let mut a = Asterisk::call(&d, script, &args).await;
        let (got, _) = a.results().await;
        assert_eq!(got[0].1, "FAILED", "{script}");
        assert!(got[3].1.contains(reason), "{script}: {got:?}");
        assert_eq!(got[4], ("XTTS_REASON".into(), "INVALID".into()), "{script}");
    }
    assert!(d.log.lock().unwrap().started.is_empty());
}

#[tokio::test]
async fn control_stream_file_without_endpos_reports_what_was_played() {
    let d = start("file", Duration::ZERO).await;
    let mut a = Asterisk::call(&d, "say?control=1&escape=5", &["One. Two. Three."]).await;
    a.expect("ANSWER").await;
    a.send("200 result=0\n").await;
    // Played through, as Asterisk 22 replies: no position in the reply.
    for _ in 0..2 {
        let line = a.next().await.unwrap();
        streamed_path(&d, &line, "CONTROL STREAM FILE", "5");
        a.send("200 result=0 endpos=0\n").await;
    }
    // Stopped by a digit: the position comes from CPLAYBACKOFFSET.
    a.next().await.unwrap();
    a.send("200 result=53 endpos=0\n").await;
    a.expect("GET VARIABLE CPLAYBACKOFFSET").await;
    a.send("200 result=1 (25)\n").await;
    let (got, _) = a.results().await;
    assert_eq!(got[0].1, "INTERRUPTED");
    // "One." and "Two." are 40 ms each, then 25 ms of "Three.".
    assert_eq!(got[2], ("XTTS_DURATION".into(), "105".into()));
}

#[tokio::test]
async fn a_silent_asterisk_does_not_hold_the_session() {
    let d = start_with("file", Duration::ZERO, |c| c.agi.reply_timeout_ms = 300).await;
    let mut a = Asterisk::call(&d, "say", &["Hi."]).await;
    a.expect("ANSWER").await;
    // No reply, ever: the daemon gives up and closes.
    let started = std::time::Instant::now();
    a.assert_closed().await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    d.assert_spool_empties().await;
}

#[tokio::test]
async fn stale_spool_files_are_removed_when_the_server_starts() {
    let spool = tempfile::tempdir().unwrap();
    std::fs::write(spool.path().join("xttsd-crashed-000.ulaw"), b"x").unwrap();
    let dir = spool.path().to_path_buf();
    let d = start_with("file", Duration::ZERO, |c| c.agi.spool_dir = dir).await;
    d.assert_spool_empties().await;
}

/// A busy engine when a later sentence is due must not cut a prompt already playing: the
/// sentence waits for room (the first one is still refused at once).
#[tokio::test]
async fn file_mode_later_sentence_waits_for_a_busy_engine() {
    later_sentence_waits_for_a_busy_engine(false).await;
}

/// The same with the prompt cache: a miss waits for room as a request past the cache does.
#[tokio::test]
async fn file_mode_cache_miss_waits_for_a_busy_engine() {
    later_sentence_waits_for_a_busy_engine(true).await;
}

async fn later_sentence_waits_for_a_busy_engine(cached: bool) {
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().join("prompts");
    let d = start_with("file", Duration::ZERO, |c| {
        c.engine.queue_limit = 1;
        if cached {
            c.prompts.cache_dir = cache_dir;
        }
    })
    .await;
    // Seeded, the cache takes every sentence (each a miss).
    let script = if cached { "say?seed=7" } else { "say" };
    let mut a = Asterisk::call(&d, script, &["One. Two. Three. Four."]).await;
    a.expect("ANSWER").await;
    a.send("200 result=0\n").await;
    let first = a.next().await.unwrap();
    streamed_path(&d, &first, "STREAM FILE", "");
    // "Two." waits in the channel and "Three." is made; "Four." is asked for only once the
    // channel has room, after "One." has played.
    d.wait_for("three sentences made", |log| log.finished == 3).await;
    // Meanwhile other callers take the engine and its only queue place.
    let request = |text: &str| SpeechRequest {
        text: text.into(),
        lang: "en".into(),
        voice: "default".into(),
        options: Default::default(),
    };
    let busy = d.services.engine.speak(request("Busy WAIT")).unwrap();
    d.wait_for("the engine is busy", |log| log.started.len() == 4).await;
    let queued = d.services.engine.speak(request("Queued.")).unwrap();
    assert!(
        d.services.engine.speak(request("No room.")).is_err(),
        "the queue is full"
    );
    a.send("200 result=0 endpos=320\n").await;
    // "Four." finds the engine full; it waits instead of failing the prompt.
    tokio::time::sleep(Duration::from_millis(300)).await;
    d.log.lock().unwrap().released = true;
    for _ in 0..3 {
        let line = a.next().await.unwrap();
        streamed_path(&d, &line, "STREAM FILE", "");
        a.send("200 result=0 endpos=320\n").await;
    }
    let (got, verbose) = a.results().await;
    assert_eq!(verbose, None);
    assert_eq!(got[0], ("XTTS_STATUS".into(), "SUCCESS".into()));
    if cached {
        let cache = xttsd::prompt_cache::PromptCache::shared(&d.services.config).unwrap();
        assert_eq!(cache.stats().misses, 4, "every sentence went through the cache");
    }
    drop((busy, queued));
}
