//! MeCab 0.996 (the system `libmecab`, the same version the reference's fugashi bundles):
//! splits Japanese text into words, each with the dictionary's features.
//!
//! A minimal `extern "C"` binding of the C API (open, parse to nodes, error text, close);
//! build.rs links `-lmecab`. The crates.io bindings fit worse: `mecab` (mecab-rs 0.1) is an
//! old wrapper that still points at Travis CI and googlecode downloads, and `mecab-sys`
//! compiles a second MeCab from bundled C++ sources on every clean build. Four functions and
//! one struct are all the front-end needs.

use std::ffi::{c_char, c_int, c_long, c_uint, c_ushort, c_void, CStr, CString};
use std::path::Path;

use anyhow::{bail, Context, Result};

/// `struct mecab_node_t` of mecab.h (0.996); every field is declared so the layout matches,
/// though only some are read.
#[repr(C)]
#[allow(dead_code)]
struct RawNode {
    prev: *const RawNode,
    next: *const RawNode,
    enext: *const RawNode,
    bnext: *const RawNode,
    rpath: *const c_void,
    lpath: *const c_void,
    surface: *const c_char,
    feature: *const c_char,
    id: c_uint,
    length: c_ushort,
    rlength: c_ushort,
    rc_attr: c_ushort,
    lc_attr: c_ushort,
    posid: c_ushort,
    char_type: u8,
    stat: u8,
    isbest: u8,
    alpha: f32,
    beta: f32,
    prob: f32,
    wcost: i16,
    cost: c_long,
}

/// `mecab_t`: only ever handled by pointer.
#[repr(C)]
struct RawTagger {
    _private: [u8; 0],
}

const MECAB_UNK_NODE: u8 = 1;
const MECAB_BOS_NODE: u8 = 2;
const MECAB_EOS_NODE: u8 = 3;

extern "C" {
    fn mecab_new(argc: c_int, argv: *mut *mut c_char) -> *mut RawTagger;
    fn mecab_strerror(mecab: *mut RawTagger) -> *const c_char;
    fn mecab_destroy(mecab: *mut RawTagger);
    fn mecab_sparse_tonode2(mecab: *mut RawTagger, text: *const c_char, len: usize) -> *const RawNode;
}

/// One word as MeCab splits it.
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    pub surface: String,
    /// Whitespace stood between this word and the one before (MeCab skips it).
    pub space_before: bool,
    /// The character class of the word's first character (the dictionary's char.def).
    pub char_type: u8,
    /// Not in the dictionary: MeCab guessed it from its characters (unk.dic).
    pub unknown: bool,
    /// The dictionary's comma-separated features (26 for UniDic, 6 for unknown words).
    features: Vec<String>,
}

impl Word {
    /// Feature `index`, or None where the entry has fewer fields.
    pub fn feature(&self, index: usize) -> Option<&str> {
        self.features.get(index).map(String::as_str)
    }
}

/// A MeCab tagger over one dictionary directory. Not safe for use from two threads at once
/// (MeCab keeps its lattice in the tagger): callers hold it behind a lock.
pub struct Tagger {
    raw: *mut RawTagger,
}

// The tagger owns its state and MeCab keeps no thread-local data; moving it between threads
// is sound as long as one thread uses it at a time, which `&mut self` in `parse` ensures.
unsafe impl Send for Tagger {}

/// The files MeCab reads from a compiled dictionary directory.
const DICTIONARY_FILES: [&str; 5] = ["sys.dic", "matrix.bin", "char.bin", "unk.dic", "dicrc"];

/// Checks that each file of the dictionary is there and that the binary ones have the
/// header of MeCab's formats, so that a truncated or foreign file is named (MeCab itself
/// reports no reason through its C API).
fn check_files(dir: &Path) -> Result<()> {
    for name in DICTIONARY_FILES {
        let path = dir.join(name);
        if !path.is_file() {
            bail!("MeCab dictionary {}: missing {name}", dir.display());
        }
        let problem = match name {
            "sys.dic" | "unk.dic" => check_lexicon(&path)?,
            "matrix.bin" => check_sized(&path, 4, |h| 4 + 2 * u64::from(u16le(h, 0)) * u64::from(u16le(h, 2)))?,
            // Category count, 32-byte category names, then one u32 per BMP character but U+FFFF.
            "char.bin" => check_sized(&path, 4, |h| 4 + 32 * u64::from(u32le(h, 0)) + 4 * 0xffff)?,
            _ => None,
        };
        if let Some(problem) = problem {
            bail!("MeCab dictionary file {} is not usable: {problem}", path.display());
        }
    }
    Ok(())
}

/// A compiled lexicon starts with its size XORed with a magic number, then version 102.
fn check_lexicon(path: &Path) -> Result<Option<String>> {
    let (header, len) = read_header(path, 8)?;
    let Some(header) = header else {
        return Ok(Some(format!("{len} bytes is too short")));
    };
    let stated = u32le(&header, 0) ^ 0xef71_8f77;
    let version = u32le(&header, 4);
    Ok(if u64::from(stated) != len {
        Some(format!("its header states {stated} bytes but it has {len}"))
    } else if version != 102 {
        Some(format!("format version {version}, expected 102"))
    } else {
        None
    })
}

/// A file whose size follows from its first `header_len` bytes.
fn check_sized(path: &Path, header_len: usize, expected: impl Fn(&[u8]) -> u64) -> Result<Option<String>> {
    let (header, len) = read_header(path, header_len)?;
    Ok(match header {
        None => Some(format!("{len} bytes is too short")),
        Some(h) if expected(&h) != len => Some(format!("its header implies {} bytes but it has {len}", expected(&h))),
        Some(_) => None,
    })
}

/// The first `n` bytes of the file (None when shorter) and its length.
fn read_header(path: &Path, n: usize) -> Result<(Option<Vec<u8>>, u64)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    if len < n as u64 {
        return Ok((None, len));
    }
    let mut header = vec![0; n];
    file.read_exact(&mut header)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok((Some(header), len))
}

fn u16le(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Tagger {
    /// Opens the compiled dictionary in `dir`. Its own `mecabrc` is used when present, so no
    /// system-wide MeCab configuration is read.
    pub fn open(dir: &Path) -> Result<Self> {
        check_files(dir)?;
        let rc = dir.join("mecabrc");
        let rc = if rc.is_file() {
            rc
        } else {
            Path::new("/dev/null").to_path_buf()
        };
        let args = ["mecab", "-r", path_str(&rc)?, "-d", path_str(dir)?];
        let args: Vec<CString> = args
            .iter()
            .map(|a| CString::new(*a).with_context(|| format!("MeCab argument {a:?} contains a NUL byte")))
            .collect::<Result<_>>()?;
        let mut argv: Vec<*mut c_char> = args.iter().map(|a| a.as_ptr() as *mut c_char).collect();
        // SAFETY: argv points at NUL-terminated strings that outlive the call; MeCab copies them.
        let raw = unsafe { mecab_new(argv.len() as c_int, argv.as_mut_ptr()) };
        if raw.is_null() {
            // The binary files passed their header checks: what is left is mostly dicrc.
            bail!(
                "MeCab cannot open the dictionary {} (is dicrc intact?): {}",
                dir.display(),
                last_error(raw)
            );
        }
        Ok(Self { raw })
    }

    /// The words of `text`, in order. MeCab reads up to the first NUL, as a C string.
    pub fn parse(&mut self, text: &str) -> Result<Vec<Word>> {
        let text = text.split('\0').next().unwrap_or("");
        // SAFETY: the pointer and length describe `text`, which outlives every use of the nodes
        // below; the nodes belong to the tagger and stay valid until its next parse.
        let mut node = unsafe { mecab_sparse_tonode2(self.raw, text.as_ptr().cast(), text.len()) };
        if node.is_null() {
            bail!("MeCab failed on {text:?}: {}", last_error(self.raw));
        }
        let mut words = Vec::new();
        while !node.is_null() {
            // SAFETY: non-null nodes of the lattice MeCab just built.
            let n = unsafe { &*node };
            if n.stat != MECAB_BOS_NODE && n.stat != MECAB_EOS_NODE {
                words.push(word_of(n)?);
            }
            node = n.next;
        }
        Ok(words)
    }
}

impl Drop for Tagger {
    fn drop(&mut self) {
        // SAFETY: `raw` came from mecab_new and is destroyed once.
        unsafe { mecab_destroy(self.raw) }
    }
}

/// The node's word: its surface is the `length` bytes at `surface`, after `rlength - length`
/// bytes of skipped whitespace.
fn word_of(n: &RawNode) -> Result<Word> {
    // SAFETY: MeCab points `surface` at `length` bytes of the sentence it is parsing, which
    // stays alive until the next parse.
    let bytes = unsafe { std::slice::from_raw_parts(n.surface.cast::<u8>(), n.length as usize) };
    let surface = std::str::from_utf8(bytes).context("MeCab split the input inside a character")?;
    // SAFETY: MeCab's features are NUL-terminated strings owned by the tagger or dictionary.
    let feature = unsafe { CStr::from_ptr(n.feature) }.to_string_lossy();
    Ok(Word {
        surface: surface.to_string(),
        space_before: n.rlength > n.length,
        char_type: n.char_type,
        unknown: n.stat == MECAB_UNK_NODE,
        features: split_features(&feature),
    })
}

/// Splits a feature line as CSV: a field in double quotes may hold commas, `""` is a quote.
fn split_features(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' if quoted => quoted = false,
            '"' if field.is_empty() => quoted = true,
            ',' if !quoted => fields.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    fields.push(field);
    fields
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("path {} is not UTF-8", path.display()))
}

/// MeCab's message for the last failure (of `raw`, or of opening when null).
fn last_error(raw: *mut RawTagger) -> String {
    // SAFETY: mecab_strerror accepts null (the global error) and returns a C string.
    let msg = unsafe { mecab_strerror(raw) };
    if msg.is_null() {
        return "unknown error".into();
    }
    unsafe { CStr::from_ptr(msg) }.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_split_as_csv() {
        assert_eq!(split_features("a,b,,c"), vec!["a", "b", "", "c"]);
        assert_eq!(split_features(r#"x,"p,q",y"#), vec!["x", "p,q", "y"]);
        assert_eq!(split_features(r#""say ""hi""",z"#), vec![r#"say "hi""#, "z"]);
    }

    #[test]
    fn missing_dictionary_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = Tagger::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("missing sys.dic"), "{err}");
    }

    /// The fetched dictionary seen through links in a temporary folder, with
    /// `broken` overwritten.
    fn dictionary_with_broken(broken: &str, content: &[u8]) -> tempfile::TempDir {
        let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/text/unidic-lite");
        let dir = tempfile::tempdir().unwrap();
        for name in DICTIONARY_FILES.iter().chain(&["mecabrc"]) {
            let from = real.join(name);
            assert!(
                from.is_file(),
                "{} is missing: run tools/fetch_text_data",
                from.display()
            );
            std::os::unix::fs::symlink(&from, dir.path().join(name)).unwrap();
        }
        std::fs::remove_file(dir.path().join(broken)).unwrap();
        std::fs::write(dir.path().join(broken), content).unwrap();
        dir
    }

    #[test]
    fn broken_files_are_named() {
        for name in ["sys.dic", "matrix.bin", "char.bin", "unk.dic"] {
            let dir = dictionary_with_broken(name, b"not a dictionary file");
            let err = Tagger::open(dir.path()).err().unwrap().to_string();
            assert!(err.contains(&format!("{name} is not usable")), "{err}");
        }
        let dir = dictionary_with_broken("char.bin", b"");
        let err = Tagger::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("0 bytes is too short"), "{err}");
    }

    #[test]
    fn broken_dicrc_is_an_error() {
        let dir = dictionary_with_broken("dicrc", b"not a configuration\n");
        let err = Tagger::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("MeCab cannot open"), "{err}");
    }

    #[test]
    fn intact_dictionary_splits_words() {
        let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/text/unidic-lite");
        let mut tagger = Tagger::open(&real).unwrap();
        let words = tagger.parse("猫 と犬").unwrap();
        let surfaces: Vec<&str> = words.iter().map(|w| w.surface.as_str()).collect();
        assert_eq!(surfaces, ["猫", "と", "犬"]);
        assert!(words[1].space_before && !words[2].space_before);
        assert_eq!(words[0].feature(17), Some("ネコ"));
        assert!(!words[0].unknown);
        assert!(tagger.parse("").unwrap().is_empty());
    }
}
