//! Call recordings, as c2cd serves them to the partner that owns the call
//! (`GET /v1/calls/{id}/recording`).
//!
//! A provider reports a recording by reference. The simulator's
//! (`sim://recordings/<id>.wav`) are made on request: silence as long as the
//! call was bridged, capped, since the simulator carries no audio. An AMI
//! provider's (`ami://<provider>/c2cd-<call id>.wav`) are files Asterisk wrote
//! in the provider's `recordings_dir`.

use std::path::PathBuf;

use crate::config::{Config, ProviderKind};

/// The largest recording file served (it is sent from memory).
pub const MAX_FILE_BYTES: u64 = 128 * 1024 * 1024;

/// Where the audio of a recording comes from.
#[derive(Debug, PartialEq, Eq)]
pub enum Audio {
    /// Made here: the WAV file.
    Made(Vec<u8>),
    /// A file on this box.
    File(PathBuf),
}

/// Where the audio of recording `reference`, of a call bridged for `seconds`,
/// is; `None` when c2cd does not hold it.
pub fn locate(reference: &str, seconds: i64, config: &Config) -> Option<Audio> {
    if let Some(wav) = audio(reference, seconds) {
        return Some(Audio::Made(wav));
    }
    let (provider, file) = reference.strip_prefix("ami://")?.split_once('/')?;
    // Only the names c2cd gives: nothing that leaves the directory.
    let ours = file.starts_with("c2cd-")
        && file.ends_with(".wav")
        && file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !file.contains("..");
    if !ours {
        return None;
    }
    config.providers.iter().find_map(|p| match &p.kind {
        ProviderKind::Ami(a) if p.name == provider => {
            Some(Audio::File(a.recordings_dir.join(file)))
        }
        _ => None,
    })
}

/// The longest simulated recording served.
pub const MAX_SIM_SECONDS: i64 = 300;
/// 8 kHz, 8-bit G.711 μ-law, mono: telephone audio, 8000 bytes a second.
const RATE: u32 = 8000;
/// μ-law silence.
const ULAW_SILENCE: u8 = 0xff;

/// The audio of recording `reference` of a call bridged for `seconds`, as a
/// WAV file; `None` when c2cd does not hold it.
pub fn audio(reference: &str, seconds: i64) -> Option<Vec<u8>> {
    reference.strip_prefix("sim://recordings/")?;
    Some(silence(seconds.clamp(0, MAX_SIM_SECONDS)))
}

/// A WAV file (RIFF, WAVE_FORMAT_MULAW) of `seconds` of silence.
fn silence(seconds: i64) -> Vec<u8> {
    let data_len = u32::try_from(seconds).unwrap_or(0) * RATE;
    let mut w = Vec::with_capacity(58 + data_len as usize);
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(50 + data_len).to_le_bytes());
    w.extend_from_slice(b"WAVE");
    w.extend_from_slice(b"fmt ");
    w.extend_from_slice(&18u32.to_le_bytes()); // chunk size
    w.extend_from_slice(&7u16.to_le_bytes()); // WAVE_FORMAT_MULAW
    w.extend_from_slice(&1u16.to_le_bytes()); // mono
    w.extend_from_slice(&RATE.to_le_bytes());
    w.extend_from_slice(&RATE.to_le_bytes()); // bytes per second
    w.extend_from_slice(&1u16.to_le_bytes()); // block align
    w.extend_from_slice(&8u16.to_le_bytes()); // bits per sample
    w.extend_from_slice(&0u16.to_le_bytes()); // no extension
    w.extend_from_slice(b"fact");
    w.extend_from_slice(&4u32.to_le_bytes());
    w.extend_from_slice(&data_len.to_le_bytes()); // samples
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data_len.to_le_bytes());
    w.resize(w.len() + data_len as usize, ULAW_SILENCE);
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simulated_recording_is_a_wav_of_the_calls_length() {
        let wav = audio("sim://recordings/x.wav", 2).unwrap();
        assert_eq!(&wav[..4], b"RIFF");
        assert_eq!(&wav[8..12], b"WAVE");
        assert_eq!(wav.len(), 58 + 16_000);
        let riff = u32::from_le_bytes(wav[4..8].try_into().unwrap()) as usize;
        assert_eq!(riff + 8, wav.len(), "the RIFF size covers the file");
        assert_eq!(
            audio("sim://recordings/x.wav", 10_000).unwrap().len(),
            58 + 8000 * MAX_SIM_SECONDS as usize
        );
        assert!(audio("file:///etc/passwd", 2).is_none());
    }

    #[test]
    fn an_ami_recording_is_a_file_in_its_providers_directory_and_nowhere_else() {
        let config = crate::config::parse(
            r#"
[[partner]]
id = "p"
dialects = ["native"]
username = "crm"
password = "crm-password-0123456789"
provider = "pbx"

[[provider]]
name = "pbx"
kind = "ami"
address = "127.0.0.1:5038"
username = "c2cd"
secret = "s"
channel = "PJSIP/{number}@trunk"
context = "c2cd"
recordings_dir = "/srv/monitor"
"#,
            crate::config::Source::Embedded,
        )
        .unwrap();
        assert_eq!(
            locate("ami://pbx/c2cd-0192.wav", 0, &config),
            Some(Audio::File("/srv/monitor/c2cd-0192.wav".into()))
        );
        for bad in [
            "ami://other/c2cd-0192.wav",
            "ami://pbx/../c2cd-0192.wav",
            "ami://pbx/c2cd-../../etc/passwd.wav",
            "ami://pbx/c2cd-x/y.wav",
            "ami://pbx/secret.wav",
        ] {
            assert_eq!(locate(bad, 0, &config), None, "{bad}");
        }
        assert!(matches!(
            locate("sim://recordings/x.wav", 1, &config),
            Some(Audio::Made(_))
        ));
    }
}
