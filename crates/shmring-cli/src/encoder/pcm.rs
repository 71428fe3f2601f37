//! Audio chunks as the encoder keeps them: copied out of the ring as soon
//! as they arrive (a chunk is small; its ring space is released at once),
//! interleaved f32, what ffmpeg's `f32le` reads.

use shmring_media::{AudioFrame, SampleFormat};

/// One chunk, interleaved f32.
#[derive(Clone, Debug)]
pub struct Pcm {
    pub timestamp_us: i64,
    pub rate: u32,
    pub channels: u32,
    /// Sample frames (samples per channel).
    pub frames: u64,
    pub samples: Vec<f32>,
}

impl Pcm {
    /// Copies `chunk` out of the ring.
    pub fn from_chunk(chunk: &AudioFrame<'_>) -> Pcm {
        let mut samples = Vec::with_capacity(chunk.frame_count() as usize * chunk.channels() as usize);
        push_interleaved(chunk, &mut samples);
        Pcm {
            timestamp_us: chunk.timestamp_us(),
            rate: chunk.sample_rate(),
            channels: chunk.channels(),
            frames: u64::from(chunk.frame_count()),
            samples,
        }
    }

    /// The samples of frame `index` as a stereo pair: mono goes to both
    /// sides, channels past the second are left out.
    pub fn stereo(&self, index: usize) -> (f32, f32) {
        let channels = self.channels.max(1) as usize;
        let at = |c: usize| self.samples.get(index * channels + c).copied().unwrap_or(0.0);
        if channels == 1 {
            (at(0), at(0))
        } else {
            (at(0), at(1))
        }
    }
}

/// Appends the samples of `chunk` to `out`, channels interleaved, as f32.
fn push_interleaved(chunk: &AudioFrame<'_>, out: &mut Vec<f32>) {
    let frames = chunk.frame_count() as usize;
    match chunk.format() {
        SampleFormat::F32Planar => {
            let planes: Vec<_> = chunk.channels_f32().collect();
            for i in 0..frames {
                out.extend(planes.iter().map(|plane| plane.get(i).unwrap_or(0.0)));
            }
        }
        SampleFormat::S16Interleaved => {
            let Some(samples) = chunk.s16() else { return };
            out.extend(samples.iter().map(|s| f32::from(s) / 32768.0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mono_goes_to_both_sides_and_extra_channels_are_left_out() {
        let mono = Pcm { timestamp_us: 0, rate: 48_000, channels: 1, frames: 2, samples: vec![0.25, -0.5] };
        assert_eq!((mono.stereo(0), mono.stereo(1)), ((0.25, 0.25), (-0.5, -0.5)));
        let four = Pcm { channels: 4, frames: 1, samples: vec![0.1, 0.2, 0.3, 0.4], ..mono.clone() };
        assert_eq!(four.stereo(0), (0.1, 0.2));
        assert_eq!(four.stereo(5), (0.0, 0.0), "past the end reads silence");
    }
}
