//! What ffprobe says of a file the encoder wrote.

use std::path::Path;
use std::process::Command;

/// The streams and duration of a media file.
#[derive(Clone, Debug, Default)]
pub struct Probe {
    pub duration: f64,
    pub video: Option<VideoStream>,
    pub audio: Option<AudioStream>,
}

#[derive(Clone, Debug)]
pub struct VideoStream {
    pub codec: String,
    pub width: u64,
    pub height: u64,
    pub fps: f64,
    pub frames: u64,
}

#[derive(Clone, Debug)]
pub struct AudioStream {
    pub codec: String,
    pub sample_rate: u64,
    pub channels: u64,
}

/// Runs `ffprobe` (next to `ffmpeg` in Debian's package) on `path`.
pub fn probe(path: &Path) -> Result<Probe, String> {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries"])
        .arg("format=duration:stream=codec_type,codec_name,width,height,avg_frame_rate,nb_frames,sample_rate,channels")
        .args(["-of", "json"])
        .arg(path)
        .output()
        .map_err(|e| format!("cannot run ffprobe: {e}"))?;
    if !output.status.success() {
        return Err(format!("ffprobe {}: {}", output.status, String::from_utf8_lossy(&output.stderr).trim()));
    }
    parse(&String::from_utf8_lossy(&output.stdout))
}

/// Reads ffprobe's JSON.
pub fn parse(json: &str) -> Result<Probe, String> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("ffprobe json: {e}"))?;
    let number = |v: &serde_json::Value| -> f64 {
        v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).unwrap_or(0.0)
    };
    let mut probe = Probe { duration: number(&value["format"]["duration"]), ..Probe::default() };
    for stream in value["streams"].as_array().into_iter().flatten() {
        let codec = stream["codec_name"].as_str().unwrap_or("?").to_string();
        match stream["codec_type"].as_str() {
            Some("video") if probe.video.is_none() => {
                let fps = stream["avg_frame_rate"]
                    .as_str()
                    .and_then(|r| r.split_once('/'))
                    .and_then(|(n, d)| Some(n.parse::<f64>().ok()? / d.parse::<f64>().ok()?))
                    .filter(|f| f.is_finite())
                    .unwrap_or(0.0);
                probe.video = Some(VideoStream {
                    codec,
                    width: stream["width"].as_u64().unwrap_or(0),
                    height: stream["height"].as_u64().unwrap_or(0),
                    fps,
                    frames: number(&stream["nb_frames"]) as u64,
                });
            }
            Some("audio") if probe.audio.is_none() => {
                probe.audio = Some(AudioStream {
                    codec,
                    sample_rate: number(&stream["sample_rate"]) as u64,
                    channels: stream["channels"].as_u64().unwrap_or(0),
                });
            }
            _ => {}
        }
    }
    Ok(probe)
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.3} s", self.duration)?;
        if let Some(v) = &self.video {
            write!(f, ", {} {}x{} {:.2} fps {} frames", v.codec, v.width, v.height, v.fps, v.frames)?;
        }
        if let Some(a) = &self.audio {
            write!(f, ", {} {} Hz {} ch", a.codec, a.sample_rate, a.channels)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ffprobe_json_is_read() {
        let json = r#"{"streams":[
            {"codec_name":"h264","codec_type":"video","width":1920,"height":1080,"avg_frame_rate":"30/1","nb_frames":"180"},
            {"codec_name":"aac","codec_type":"audio","sample_rate":"48000","channels":2}],
            "format":{"duration":"6.016000"}}"#;
        let probe = super::parse(json).unwrap();
        assert!((probe.duration - 6.016).abs() < 1e-9);
        let video = probe.video.unwrap();
        assert_eq!((video.width, video.height, video.frames), (1920, 1080, 180));
        assert!((video.fps - 30.0).abs() < 1e-9);
        assert_eq!(probe.audio.unwrap().sample_rate, 48_000);
    }
}
