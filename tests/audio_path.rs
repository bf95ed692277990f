//! The audio path from engine chunks to call frames, as a session runs it.

use xttsd::audio::{g711, render, FramePipeline};
use xttsd::config::AudioConfig;

const ENGINE_RATE: u32 = 24000;

fn audio(peak_dbfs: f64, fade_out_ms: u32) -> AudioConfig {
    AudioConfig { peak_dbfs, fade_out_ms }
}

fn tone(freq: f64, secs: f64, amp: f64) -> Vec<f32> {
    let n = (ENGINE_RATE as f64 * secs) as usize;
    (0..n)
        .map(|i| (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / ENGINE_RATE as f64).sin()) as f32)
        .collect()
}

/// Feeds `input` in chunks of the given sizes (cycled), as the engine streams it.
fn stream(input: &[f32], sizes: &[usize], call_rate: u32, cfg: &AudioConfig) -> Vec<Vec<i16>> {
    let mut p = FramePipeline::new(ENGINE_RATE, call_rate, cfg).unwrap();
    let mut frames = Vec::new();
    let mut at = 0;
    for &n in sizes.iter().cycle() {
        if at >= input.len() {
            break;
        }
        let n = n.min(input.len() - at);
        frames.extend(p.push(&input[at..at + n]).unwrap());
        at += n;
    }
    frames.extend(p.finish().unwrap());
    frames
}

fn rms(x: &[i16]) -> f64 {
    (x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
}

#[test]
fn chunking_never_changes_the_frames() {
    let input: Vec<f32> = tone(440.0, 1.3, 0.4)
        .iter()
        .zip(tone(2500.0, 1.3, 0.3))
        .map(|(a, b)| a + b)
        .collect();
    let cfg = audio(-3.0, 10);
    for rate in [8000, 16000] {
        let reference = stream(&input, &[input.len()], rate, &cfg);
        for sizes in [&[1usize, 999, 24][..], &[4800], &[7200, 1200, 333], &[17]] {
            assert_eq!(
                stream(&input, sizes, rate, &cfg),
                reference,
                "{rate} Hz, chunks {sizes:?}"
            );
        }
    }
}

#[test]
fn frames_are_20ms_at_the_call_rate() {
    let input = tone(1000.0, 0.5, 0.5);
    let cfg = audio(-3.0, 10);
    for (rate, samples) in [(8000, 160), (12000, 240), (16000, 320), (48000, 960)] {
        let frames = stream(&input, &[2400, 4800], rate, &cfg);
        assert_eq!(frames.len(), 25, "{rate} Hz");
        assert!(frames.iter().all(|f| f.len() == samples), "{rate} Hz");
    }
    // A length that is not a whole number of frames: the last one is padded with silence.
    let frames = stream(&tone(1000.0, 0.11, 0.5), &[1000], 8000, &cfg);
    assert_eq!(frames.len(), 6);
    assert!(frames[5][80..].iter().all(|&s| s == 0));
}

#[test]
fn chunk_seams_do_not_click() {
    // A continuous tone streamed in uneven chunks: no sample step larger than the tone's own.
    let amp = 0.6;
    let input = tone(440.0, 1.0, amp);
    let cfg = audio(-3.0, 10);
    let out: Vec<i16> = stream(&input, &[4321, 1, 2400, 777], 8000, &cfg).concat();
    let peak = amp * 10f64.powf(-3.0 / 20.0) * 32767.0;
    let max_step = peak * 2.0 * std::f64::consts::PI * 440.0 / 8000.0;
    let body = &out[80..out.len() - 160]; // away from the start and the fade
    let worst = body
        .windows(2)
        .map(|w| (w[1] as f64 - w[0] as f64).abs())
        .fold(0.0, f64::max);
    assert!(
        worst <= max_step * 1.05,
        "step of {worst:.0} (a sine allows {max_step:.0})"
    );
}

#[test]
fn level_band_and_headroom_at_8k() {
    let cfg = audio(-3.0, 10);
    // In band: a 1 kHz tone at 0.5 comes out at 0.5 × −3 dBFS.
    let out = render(&tone(1000.0, 1.0, 0.5), ENGINE_RATE, 8000, &cfg).unwrap();
    let body = &out[400..7600];
    let expect = 0.5 * 10f64.powf(-3.0 / 20.0) * 32767.0 / 2f64.sqrt();
    let level = 20.0 * (rms(body) / expect).log10();
    assert!(level.abs() < 0.1, "1 kHz level off by {level:.2} dB");
    // Above 4 kHz: removed, not folded back into the band.
    let out = render(&tone(6000.0, 1.0, 0.5), ENGINE_RATE, 8000, &cfg).unwrap();
    let folded = 20.0 * (rms(&out[400..7600]) / expect).log10();
    assert!(folded < -40.0, "6 kHz leaks into 8 kHz at {folded:.1} dB");
    // A full-scale square wave (which overshoots once band-limited) stays under the peak.
    let square: Vec<f32> = tone(300.0, 0.5, 1.0).iter().map(|x| x.signum()).collect();
    let out = render(&square, ENGINE_RATE, 8000, &cfg).unwrap();
    let limit = 10f64.powf(-3.0 / 20.0) * 32767.0;
    let peak = out.iter().map(|&s| (s as f64).abs()).fold(0.0, f64::max);
    assert!(peak <= limit + 1.0, "peak {peak:.0} above the {limit:.0} limit");
}

#[test]
fn speech_ends_with_a_fade() {
    let cfg = audio(-3.0, 10);
    let out = render(&tone(1000.0, 0.2, 0.8), ENGINE_RATE, 8000, &cfg).unwrap();
    assert_eq!(out.len(), 1600);
    // The last 10 ms fall towards zero instead of stopping at full level.
    let envelope = |s: &[i16]| s.iter().map(|&v| (v as i32).abs()).max().unwrap();
    let before = envelope(&out[1400..1520]);
    let last = envelope(&out[1590..1600]);
    assert!(last * 5 < before, "no fade: last {last}, before {before}");
}

#[test]
fn ulaw_of_the_path_keeps_the_tone() {
    let cfg = audio(-3.0, 10);
    let out = render(&tone(1000.0, 0.5, 0.5), ENGINE_RATE, 8000, &cfg).unwrap();
    let decoded = g711::ulaw_decode_all(&g711::ulaw_encode_all(&out));
    let noise: Vec<i16> = out.iter().zip(&decoded).map(|(a, b)| a - b).collect();
    let snr = 20.0 * (rms(&out) / rms(&noise)).log10();
    assert!(snr > 30.0, "µ-law SNR {snr:.1} dB");
}

#[test]
fn bad_rates_are_refused() {
    let cfg = audio(-3.0, 10);
    assert!(FramePipeline::new(ENGINE_RATE, 0, &cfg).is_err());
    assert!(FramePipeline::new(ENGINE_RATE, 8001, &cfg).is_err());
    assert!(FramePipeline::new(0, 8000, &cfg).is_err());
    assert!(FramePipeline::new(ENGINE_RATE, 8000, &audio(6.0, 10)).is_err());
}
