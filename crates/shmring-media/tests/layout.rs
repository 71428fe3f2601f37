//! The media headers as bindgen generated them agree with a C11 and a C++20
//! compiler (the probe tables built from the same header), and with the
//! constants this crate states.

use std::mem::{align_of, offset_of, size_of};

use shmring_media::sys::{
    self, shmring_announce_header as Announce, shmring_audio_header as Audio, shmring_video_header as Video,
};

extern "C" {
    static shmring_media_layout_c: [u32; 0];
    static shmring_media_layout_c_len: u32;
    static shmring_media_layout_cxx: [u32; 0];
    static shmring_media_layout_cxx_len: u32;
}

/// Sizes, offsets and constants in the order of `probe/layout_probe.c`,
/// with the value each must have.
fn rust_table() -> Vec<(&'static str, usize, usize)> {
    vec![
        ("sizeof(video)", size_of::<Video>(), 128),
        ("alignof(video)", align_of::<Video>(), 8),
        ("video.magic", offset_of!(Video, magic), 0),
        ("video.version", offset_of!(Video, version), 4),
        ("video.header_size", offset_of!(Video, header_size), 6),
        ("video.stream_id", offset_of!(Video, stream_id), 8),
        ("video.pixel_format", offset_of!(Video, pixel_format), 12),
        ("video.timestamp_us", offset_of!(Video, timestamp_us), 16),
        ("video.frame_number", offset_of!(Video, frame_number), 24),
        ("video.width", offset_of!(Video, width), 32),
        ("video.height", offset_of!(Video, height), 36),
        ("video.plane_count", offset_of!(Video, plane_count), 40),
        ("video.reserved0", offset_of!(Video, reserved0), 44),
        ("video.plane_offset", offset_of!(Video, plane_offset), 48),
        ("video.plane_stride", offset_of!(Video, plane_stride), 64),
        ("video.reserved1", offset_of!(Video, reserved1), 80),
        ("sizeof(audio)", size_of::<Audio>(), 64),
        ("alignof(audio)", align_of::<Audio>(), 8),
        ("audio.magic", offset_of!(Audio, magic), 0),
        ("audio.version", offset_of!(Audio, version), 4),
        ("audio.header_size", offset_of!(Audio, header_size), 6),
        ("audio.stream_id", offset_of!(Audio, stream_id), 8),
        ("audio.sample_format", offset_of!(Audio, sample_format), 12),
        ("audio.timestamp_us", offset_of!(Audio, timestamp_us), 16),
        ("audio.frame_number", offset_of!(Audio, frame_number), 24),
        ("audio.sample_rate", offset_of!(Audio, sample_rate), 32),
        ("audio.channels", offset_of!(Audio, channels), 36),
        ("audio.frame_count", offset_of!(Audio, frame_count), 40),
        ("audio.data_offset", offset_of!(Audio, data_offset), 44),
        ("audio.channel_stride", offset_of!(Audio, channel_stride), 48),
        ("audio.reserved0", offset_of!(Audio, reserved0), 52),
        ("sizeof(announce)", size_of::<Announce>(), 64),
        ("alignof(announce)", align_of::<Announce>(), 8),
        ("announce.magic", offset_of!(Announce, magic), 0),
        ("announce.version", offset_of!(Announce, version), 4),
        ("announce.header_size", offset_of!(Announce, header_size), 6),
        ("announce.stream_id", offset_of!(Announce, stream_id), 8),
        ("announce.stream_kind", offset_of!(Announce, stream_kind), 12),
        ("announce.timestamp_us", offset_of!(Announce, timestamp_us), 16),
        ("announce.label_offset", offset_of!(Announce, label_offset), 24),
        ("announce.label_length", offset_of!(Announce, label_length), 28),
        ("announce.reserved0", offset_of!(Announce, reserved0), 32),
        ("KIND_VIDEO", shmring_media::KIND_VIDEO as usize, 1),
        ("KIND_AUDIO", shmring_media::KIND_AUDIO as usize, 2),
        ("KIND_ANNOUNCE", shmring_media::KIND_ANNOUNCE as usize, 3),
        ("VIDEO_MAGIC", shmring_media::VIDEO_MAGIC as usize, u32::from_le_bytes(*b"SHMV") as usize),
        ("AUDIO_MAGIC", shmring_media::AUDIO_MAGIC as usize, u32::from_le_bytes(*b"SHMA") as usize),
        ("ANNOUNCE_MAGIC", shmring_media::ANNOUNCE_MAGIC as usize, u32::from_le_bytes(*b"SHMN") as usize),
        ("MAX_LABEL", shmring_media::MAX_LABEL, 1024),
        ("MEDIA_VERSION", shmring_media::MEDIA_VERSION as usize, 1),
        ("MEDIA_ALIGN", shmring_media::MEDIA_ALIGN, 64),
        ("MAX_PLANES", shmring_media::MAX_PLANES, 4),
        ("MAX_CHANNELS", shmring_media::MAX_CHANNELS as usize, 32),
        ("PIXEL_I420", shmring_media::PixelFormat::I420 as usize, sys::SHMRING_PIXEL_I420 as usize),
        ("PIXEL_NV12", shmring_media::PixelFormat::Nv12 as usize, sys::SHMRING_PIXEL_NV12 as usize),
        ("PIXEL_RGBA", shmring_media::PixelFormat::Rgba as usize, sys::SHMRING_PIXEL_RGBA as usize),
        ("PIXEL_BGRA", shmring_media::PixelFormat::Bgra as usize, sys::SHMRING_PIXEL_BGRA as usize),
        ("SAMPLE_F32_PLANAR", shmring_media::SampleFormat::F32Planar as usize, 1),
        ("SAMPLE_S16_INTERLEAVED", shmring_media::SampleFormat::S16Interleaved as usize, 2),
    ]
}

fn probe(table: &'static [u32; 0], len: &'static u32) -> &'static [u32] {
    // SAFETY: the probe defines `table` as an array of `len` u32 values
    // (its `_len` symbol is computed from the array by the compiler).
    unsafe { std::slice::from_raw_parts(table.as_ptr(), *len as usize) }
}

fn compare(compiler: &str, table: &[u32]) {
    let rust = rust_table();
    assert_eq!(table.len(), rust.len(), "{compiler} probe and Rust table list different entries");
    let mismatches: Vec<String> = rust
        .iter()
        .zip(table)
        .filter(|((_, r, _), &c)| *r != c as usize)
        .map(|((name, r, _), c)| format!("{name}: rust {r}, {compiler} {c}"))
        .collect();
    assert!(mismatches.is_empty(), "layout differs:\n{}", mismatches.join("\n"));
}

#[test]
fn rust_layout_matches_the_stated_contract() {
    for (name, actual, expected) in rust_table() {
        assert_eq!(actual, expected, "{name}");
    }
}

#[test]
fn c11_compiler_lays_out_headers_like_bindgen() {
    // SAFETY: taking references to immutable statics defined by the probe.
    let (table, len) =
        unsafe { (&*std::ptr::addr_of!(shmring_media_layout_c), &*std::ptr::addr_of!(shmring_media_layout_c_len)) };
    compare("C11", probe(table, len));
}

#[test]
fn cxx20_compiler_with_chromium_flags_lays_out_headers_like_bindgen() {
    // SAFETY: taking references to immutable statics defined by the probe.
    let (table, len) =
        unsafe { (&*std::ptr::addr_of!(shmring_media_layout_cxx), &*std::ptr::addr_of!(shmring_media_layout_cxx_len)) };
    compare("C++20", probe(table, len));
}
