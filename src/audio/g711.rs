//! G.711 µ-law and A-law (8 kHz telephony), through `audio-codec-algorithms`.
//!
//! The crate follows the ITU G.191 reference software, which forms negative magnitudes by
//! one's complement. Its µ-law therefore differs from Asterisk's encoder (negate, clip
//! 32 635, bias 0x84) on exactly 127 negative inputs: those whose magnitude is a decision
//! value itself, which it places in the neighbouring quieter interval (one code apart; the
//! tests check that every difference is of that kind). That is inaudible.

use audio_codec_algorithms::{decode_alaw, decode_ulaw, encode_alaw, encode_ulaw};

/// µ-law code of digital silence (positive zero). Never pad µ-law with 0x00: the loudest code.
pub const ULAW_SILENCE: u8 = 0xFF;
/// A-law code of digital silence.
pub const ALAW_SILENCE: u8 = 0xD5;

pub fn ulaw_encode(sample: i16) -> u8 {
    encode_ulaw(sample)
}

pub fn ulaw_decode(code: u8) -> i16 {
    decode_ulaw(code)
}

pub fn alaw_encode(sample: i16) -> u8 {
    encode_alaw(sample)
}

pub fn alaw_decode(code: u8) -> i16 {
    decode_alaw(code)
}

pub fn ulaw_encode_all(samples: &[i16]) -> Vec<u8> {
    samples.iter().map(|&s| encode_ulaw(s)).collect()
}

pub fn ulaw_decode_all(codes: &[u8]) -> Vec<i16> {
    codes.iter().map(|&c| decode_ulaw(c)).collect()
}

pub fn alaw_encode_all(samples: &[i16]) -> Vec<u8> {
    samples.iter().map(|&s| encode_alaw(s)).collect()
}

pub fn alaw_decode_all(codes: &[u8]) -> Vec<i16> {
    codes.iter().map(|&c| decode_alaw(c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// µ-law encoder written from the G.711 rules as Asterisk applies them.
    fn ulaw_rule_encode(sample: i16) -> u8 {
        let sign: u8 = if sample < 0 { 0x80 } else { 0 };
        let magnitude = (sample as i32).abs().min(32635) + 0x84;
        let mut exponent = 7;
        while exponent > 0 && magnitude & (1 << (exponent + 7)) == 0 {
            exponent -= 1;
        }
        let mantissa = ((magnitude >> (exponent + 3)) & 0x0F) as u8;
        !(sign | (exponent as u8) << 4 | mantissa)
    }

    fn ulaw_rule_decode(code: u8) -> i16 {
        let code = !code;
        let exponent = (code >> 4) & 0x07;
        let mantissa = (code & 0x0F) as i32;
        let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
        if code & 0x80 != 0 {
            -magnitude as i16
        } else {
            magnitude as i16
        }
    }

    /// A-law encoder from the G.711 rules: 13-bit input (negative values by one's
    /// complement, as the standard's symmetric decision intervals imply), segments of
    /// 32 steps doubling from the second on, result XOR 0x55.
    fn alaw_rule_encode(sample: i16) -> u8 {
        let linear = (sample >> 3) as i32; // 13 bits
        let (sign, magnitude): (u8, i32) = if linear >= 0 { (0x80, linear) } else { (0, !linear) };
        let code = if magnitude >= 4096 {
            0x7F
        } else if magnitude < 32 {
            (magnitude >> 1) as u8
        } else {
            let mut segment = 1;
            while magnitude >= (32 << segment) {
                segment += 1;
            }
            ((segment as u8) << 4) | ((magnitude >> segment) & 0x0F) as u8
        };
        (sign | code) ^ 0x55
    }

    fn alaw_rule_decode(code: u8) -> i16 {
        let code = code ^ 0x55;
        let segment = (code >> 4) & 0x07;
        let step = ((code & 0x0F) as i32) << 4;
        let magnitude = match segment {
            0 => step + 8,
            _ => (step + 0x108) << (segment - 1),
        };
        if code & 0x80 != 0 {
            magnitude as i16
        } else {
            -magnitude as i16
        }
    }

    #[test]
    fn ulaw_decoder_matches_rules_for_all_codes() {
        for code in 0..=255u8 {
            assert_eq!(ulaw_decode(code), ulaw_rule_decode(code), "code {code:#04x}");
        }
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_decode(ULAW_SILENCE), 0);
    }

    #[test]
    fn ulaw_encoder_matches_rules_except_decision_values() {
        let mut edges = 0;
        for sample in i16::MIN..=i16::MAX {
            let ours = ulaw_encode(sample);
            let rule = ulaw_rule_encode(sample);
            if ours == rule {
                continue;
            }
            // Allowed: a negative input whose magnitude is exactly a decision value (the
            // lowest magnitude of the rule's code); the crate puts it in the interval below.
            let below = ulaw_rule_encode(sample + 1);
            assert!(
                sample < 0 && below != rule && ours == below,
                "sample {sample}: {ours:#04x} vs rule {rule:#04x}"
            );
            edges += 1;
        }
        assert_eq!(edges, 127);
        assert_eq!(ulaw_encode(0), ULAW_SILENCE);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
    }

    #[test]
    fn alaw_matches_rules_bit_exact() {
        for code in 0..=255u8 {
            assert_eq!(alaw_decode(code), alaw_rule_decode(code), "code {code:#04x}");
        }
        for sample in i16::MIN..=i16::MAX {
            assert_eq!(alaw_encode(sample), alaw_rule_encode(sample), "sample {sample}");
        }
        assert_eq!(alaw_encode(0), ALAW_SILENCE);
        assert_eq!(alaw_decode(ALAW_SILENCE), 8);
    }

    #[test]
    fn round_trip_stays_within_a_step() {
        let samples: Vec<i16> = (-300..300).map(|i| i * 107).collect();
        for (s, d) in samples.iter().zip(ulaw_decode_all(&ulaw_encode_all(&samples))) {
            let step = (*s as i32).abs() / 16 + 8;
            assert!((*s as i32 - d as i32).abs() <= step, "{s} -> {d}");
        }
        for (s, d) in samples.iter().zip(alaw_decode_all(&alaw_encode_all(&samples))) {
            let step = (*s as i32).abs() / 16 + 16;
            assert!((*s as i32 - d as i32).abs() <= step, "{s} -> {d}");
        }
    }
}
