//! Mono 16-bit WAV files (recordings of calls, `xttsd say` output).

use std::io::Cursor;
use std::path::Path;

use anyhow::{Context, Result};

fn spec(rate: u32) -> hound::WavSpec {
    hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    }
}

/// A complete WAV file in memory.
pub fn wav_bytes(rate: u32, samples: &[i16]) -> Result<Vec<u8>> {
    let mut cursor = Cursor::new(Vec::new());
    {
        let mut writer = hound::WavWriter::new(&mut cursor, spec(rate)).context("starting WAV data")?;
        for &s in samples {
            writer.write_sample(s).context("writing WAV samples")?;
        }
        writer.finalize().context("finishing WAV data")?;
    }
    Ok(cursor.into_inner())
}

/// Writes a WAV file; it appears under its name only once complete.
pub fn write_wav(path: &Path, rate: u32, samples: &[i16]) -> Result<()> {
    let data = wav_bytes(rate, samples)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".part");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, data).with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot rename into place", path.display()))
}

/// Reads a mono 16-bit WAV file: (rate, samples).
pub fn read_wav(path: &Path) -> Result<(u32, Vec<i16>)> {
    let reader = hound::WavReader::open(path).with_context(|| format!("{}: cannot open WAV", path.display()))?;
    let spec = reader.spec();
    anyhow::ensure!(
        spec.channels == 1 && spec.bits_per_sample == 16 && spec.sample_format == hound::SampleFormat::Int,
        "{}: expected mono 16-bit PCM, found {} channel(s) of {} bits",
        path.display(),
        spec.channels,
        spec.bits_per_sample
    );
    let samples = reader
        .into_samples::<i16>()
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: bad WAV data", path.display()))?;
    Ok((spec.sample_rate, samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wav");
        let samples: Vec<i16> = (0..1000).map(|i| (i * 31 % 2000 - 1000) as i16).collect();
        write_wav(&path, 8000, &samples).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..4], b"RIFF");
        assert_eq!(bytes.len(), 44 + 2000);
        assert_eq!(read_wav(&path).unwrap(), (8000, samples));
        assert!(!dir.path().join("x.wav.part").exists());
    }

    #[test]
    fn unreadable_paths_are_named() {
        let err = write_wav(Path::new("/nonexistent-dir/x.wav"), 8000, &[0]).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent-dir/x.wav"));
        let err = read_wav(Path::new("/nonexistent-dir/y.wav")).unwrap_err();
        assert!(format!("{err:#}").contains("y.wav"));
    }
}
