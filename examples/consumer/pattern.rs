//! The test pattern of `ffi/tests/pattern.h`, checked on the Rust side
//! (keep the two in step).

use shmring_media::{AudioFrame, VideoFrame};

const MAX_ROW: usize = 8192;
const COUNTER_BYTES: usize = 16;

/// 0, 1, ..., 255, 0, 1, ...: every row of the pattern is a window of it,
/// so a row is checked with one slice comparison (a `memcmp`).
pub struct Ramp(Vec<u8>);

impl Ramp {
    pub fn new() -> Ramp {
        Ramp((0..256 + MAX_ROW).map(|i| i as u8).collect())
    }

    fn row(&self, stream: u32, frame: u64, plane: u32, row: u32, len: usize) -> Option<&[u8]> {
        let phase = (7u32.wrapping_mul(row))
            .wrapping_add(13 * plane)
            .wrapping_add(37u32.wrapping_mul(frame as u32))
            .wrapping_add(101u32.wrapping_mul(stream))
            & 255;
        self.0.get(phase as usize..phase as usize + len)
    }

    /// Checks the counter and every row of every plane of an I420 frame.
    /// Each row is copied out of the ring once, then compared (the copy is
    /// what a producer can no longer change).
    pub fn check_video(&self, video: &VideoFrame<'_>) -> Result<(), String> {
        let (stream, n) = (video.stream_id(), video.frame_number());
        let mut row = Vec::with_capacity(MAX_ROW);
        let read = |plane: usize, r: usize, row: &mut Vec<u8>| {
            let bytes = video.row(plane, r)?;
            row.clear();
            bytes.append_to(row);
            Some(())
        };
        read(0, 0, &mut row).ok_or("no first row")?;
        if row.len() < COUNTER_BYTES {
            return Err("frame narrower than its counter".into());
        }
        let counter = u64::from_le_bytes(row[..8].try_into().expect("8 bytes"));
        let counter_stream = u32::from_le_bytes(row[8..12].try_into().expect("4 bytes"));
        if counter != n || counter_stream != stream || &row[12..16] != b"FAKE" {
            return Err(format!("pixel counter says stream {counter_stream} frame {counter}, header {stream}/{n}"));
        }
        for plane in 0..video.plane_count() {
            for r in 0.. {
                if read(plane, r, &mut row).is_none() {
                    break;
                }
                let expected = self.row(stream, n, plane as u32, r as u32, row.len()).ok_or("row too wide")?;
                let skip = if plane == 0 && r == 0 { COUNTER_BYTES } else { 0 };
                if row[skip..] != expected[skip..] {
                    let x = (skip..row.len()).find(|&x| row[x] != expected[x]).unwrap_or(0);
                    return Err(format!("plane {plane} row {r} byte {x}: {} expected {}", row[x], expected[x]));
                }
            }
        }
        Ok(())
    }
}

/// Checks every sample of an f32 planar chunk.
pub fn check_audio(audio: &AudioFrame<'_>) -> Result<(), String> {
    let (n, count) = (audio.frame_number(), u64::from(audio.frame_count()));
    for (c, samples) in audio.channels_f32().enumerate() {
        for (i, s) in samples.iter().enumerate() {
            let expected = ((n * count + i as u64) % 65536) as f32 + 1000.0 * c as f32;
            if s != expected {
                return Err(format!("channel {c} sample {i}: {s} expected {expected}"));
            }
        }
    }
    if audio.channels_f32().count() != audio.channels() as usize {
        return Err("not f32 planar".into());
    }
    Ok(())
}
