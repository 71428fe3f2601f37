//! Frames written through a real ring read back as typed views, byte for
//! byte; lying headers are refused with an error, never a panic.

use proptest::prelude::*;
use shmring::{Consumer, RingOptions};
use shmring_media::*;

fn ring(capacity: u64) -> shmring::RingConsumer {
    Consumer::create_anonymous(&RingOptions::with_capacity(capacity)).expect("create ring")
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[test]
fn i420_written_with_foreign_strides_reads_back_row_by_row() {
    let consumer = ring(1 << 22);
    let mut producer = consumer.producer().unwrap();
    let (w, h) = (101u32, 37u32); // odd sizes: chroma rounds up, strides re-align
    let (cw, ch) = (51usize, 19usize);
    let (ys, us, vs) = (w as usize + 3, cw + 5, cw + 1);
    let y = pattern(ys * (h as usize - 1) + w as usize, 1); // last row unpadded
    let u = pattern(us * ch, 2);
    let v = pattern(vs * ch, 3);
    let planes = I420Planes { width: w, height: h, y: &y, y_stride: ys, u: &u, u_stride: us, v: &v, v_stride: vs };
    let meta = VideoMeta { stream_id: 9, timestamp_us: -5, frame_number: 77 };
    write_video_i420(&mut producer, &meta, &planes).unwrap();

    let frame = consumer.recv().unwrap();
    assert_eq!(frame.kind(), KIND_VIDEO);
    assert_eq!(frame.bytes().as_ptr() as usize % 64, 0, "ring payloads are 64-byte aligned");
    let video = VideoFrame::parse(&frame).unwrap();
    assert_eq!((video.stream_id(), video.timestamp_us(), video.frame_number()), (9, -5, 77));
    assert_eq!((video.width(), video.height(), video.format()), (w, h, PixelFormat::I420));
    for (plane, src, stride, rows, row_bytes) in
        [(0, &y, ys, h as usize, w as usize), (1, &u, us, ch, cw), (2, &v, vs, ch, cw)]
    {
        assert_eq!(video.stride(plane) % 64, 0);
        assert_eq!((video.plane(plane).as_ptr() as usize) % 64, 0, "plane {plane} aligned");
        for r in 0..rows {
            assert_eq!(
                video.row(plane, r).unwrap().to_vec(),
                &src[r * stride..r * stride + row_bytes],
                "plane {plane} row {r}"
            );
        }
        assert!(video.row(plane, rows).is_none());
    }
    assert_eq!(video.y().len(), video.y_stride() * h as usize);
    assert!(AudioFrame::parse(&frame).is_err(), "a video record is not audio");
}

#[test]
fn reserved_slot_is_filled_in_place_for_every_pixel_format() {
    let consumer = ring(1 << 22);
    let mut producer = consumer.producer().unwrap();
    for (n, format) in
        [PixelFormat::I420, PixelFormat::Nv12, PixelFormat::Rgba, PixelFormat::Bgra].into_iter().enumerate()
    {
        let meta = VideoMeta { stream_id: n as u32, timestamp_us: 1000, frame_number: n as u64 };
        let mut slot = reserve_video(&mut producer, &meta, format, 320, 181).unwrap();
        for (plane, bytes) in slot.planes_mut().into_iter().enumerate() {
            bytes.fill(plane as u8 + 10);
        }
        slot.commit();
        let frame = consumer.recv().unwrap();
        let video = VideoFrame::parse(&frame).unwrap();
        assert_eq!(video.format(), format);
        assert_eq!(video.plane_count(), format.plane_count());
        for plane in 0..format.plane_count() {
            let (row_bytes, rows) = format.plane_geometry(plane, 320, 181).unwrap();
            for r in 0..rows as usize {
                assert!(video.row(plane, r).unwrap().to_vec().iter().all(|&b| b == plane as u8 + 10));
                assert_eq!(video.row(plane, r).unwrap().len(), row_bytes as usize);
            }
        }
        assert!(video.plane(format.plane_count()).is_empty());
    }
}

#[test]
fn uncommitted_video_slot_is_never_seen() {
    let consumer = ring(1 << 20);
    let mut producer = consumer.producer().unwrap();
    let meta = VideoMeta::default();
    drop(reserve_video(&mut producer, &meta, PixelFormat::Rgba, 16, 16).unwrap());
    write_audio(
        &mut producer,
        &AudioMeta { sample_rate: 48_000, ..Default::default() },
        AudioSamples::S16Interleaved { channels: 2, samples: &[1, -1, 2, -2] },
    )
    .unwrap();
    let frame = consumer.recv().unwrap();
    assert_eq!(frame.kind(), KIND_AUDIO, "the skipped video record was stepped over");
}

#[test]
fn audio_planar_and_interleaved_read_back() {
    let consumer = ring(1 << 20);
    let mut producer = consumer.producer().unwrap();
    let left: Vec<f32> = (0..480).map(|i| i as f32 / 480.0).collect();
    let right: Vec<f32> = (0..480).map(|i| -(i as f32)).collect();
    let meta = AudioMeta { stream_id: 3, timestamp_us: 10_000, frame_number: 1, sample_rate: 48_000 };
    write_audio(&mut producer, &meta, AudioSamples::F32Planar(&[&left, &right])).unwrap();
    let interleaved: Vec<i16> = (0..960).map(|i| i as i16 - 480).collect();
    write_audio(&mut producer, &meta, AudioSamples::S16Interleaved { channels: 2, samples: &interleaved }).unwrap();

    let frame = consumer.recv().unwrap();
    let audio = AudioFrame::parse(&frame).unwrap();
    assert_eq!((audio.channels(), audio.frame_count(), audio.sample_rate()), (2, 480, 48_000));
    assert_eq!(audio.format(), SampleFormat::F32Planar);
    assert_eq!(audio.channel_f32(0).unwrap().to_vec(), left);
    assert_eq!(audio.channel_f32(1).unwrap().iter().collect::<Vec<_>>(), right);
    assert!(audio.channel_f32(2).is_none() && audio.s16().is_none());
    assert_eq!(audio.channels_f32().count(), 2);
    assert!(VideoFrame::parse(&frame).is_err());
    drop(frame);

    let frame = consumer.recv().unwrap();
    let audio = AudioFrame::parse(&frame).unwrap();
    assert_eq!(audio.format(), SampleFormat::S16Interleaved);
    assert_eq!(audio.s16().unwrap().to_vec(), interleaved);
    assert!(audio.channel_f32(0).is_none());
}

#[test]
fn writers_refuse_inconsistent_input_before_touching_the_ring() {
    let consumer = ring(1 << 20);
    let mut producer = consumer.producer().unwrap();
    let y = vec![0u8; 100];
    let short = I420Planes { width: 16, height: 16, y: &y, y_stride: 16, u: &y, u_stride: 8, v: &y, v_stride: 8 };
    assert!(matches!(
        write_video_i420(&mut producer, &VideoMeta::default(), &short),
        Err(MediaError::InvalidInput { .. })
    ));
    let narrow = I420Planes { y_stride: 8, ..short };
    assert!(write_video_i420(&mut producer, &VideoMeta::default(), &narrow).is_err());
    let meta = AudioMeta { sample_rate: 48_000, ..Default::default() };
    assert!(write_audio(&mut producer, &meta, AudioSamples::F32Planar(&[&[0.0; 3], &[0.0; 4]])).is_err());
    assert!(write_audio(&mut producer, &meta, AudioSamples::S16Interleaved { channels: 2, samples: &[0; 3] }).is_err());
    assert!(reserve_video(&mut producer, &VideoMeta::default(), PixelFormat::I420, 0, 10).is_err());
    assert_eq!(consumer.stats().committed_frames, 0);
    assert_eq!(consumer.stats().skipped, 0, "nothing was even reserved");
}

#[test]
fn full_ring_drops_and_reports_it() {
    let consumer = ring(1 << 16);
    let mut producer = consumer.producer().unwrap();
    let meta = VideoMeta::default();
    let mut dropped = 0;
    for _ in 0..8 {
        match reserve_video(&mut producer, &meta, PixelFormat::Rgba, 64, 64) {
            Ok(slot) => slot.commit(),
            Err(MediaError::Ring(shmring::Error::Dropped)) => dropped += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(dropped > 0);
    assert_eq!(consumer.stats().drops, dropped);
}

/// A valid 64x32 I420 payload (header and planes), 64-byte aligned.
fn valid_video() -> Vec<u8> {
    let consumer = ring(1 << 20);
    let mut producer = consumer.producer().unwrap();
    let slot = reserve_video(&mut producer, &VideoMeta::default(), PixelFormat::I420, 64, 32).unwrap();
    slot.commit();
    let frame = consumer.recv().unwrap();
    frame.to_vec()
}

fn poke(bytes: &mut [u8], offset: usize, value: u32) {
    bytes[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
}

#[test]
fn lying_video_headers_are_errors() {
    let good = valid_video();
    assert!(VideoFrame::from_payload(&good[..]).is_ok());
    let cases: &[(&str, usize, u32)] = &[
        ("magic", 0, 0xdead_beef),
        ("pixel format", 12, 99),
        ("width zero", 32, 0),
        ("width huge", 32, 1 << 20),
        ("height beyond planes", 36, 33),
        ("plane count", 40, 2),
        ("y offset inside header", 48, 64),
        ("u offset past end", 52, 1 << 30),
        ("v offset unaligned", 56, 128 + 64 * 32 + 32 * 16 + 8),
        ("y stride short", 64, 0),
        ("u stride huge", 68, !63u32),
        ("unused plane set", 60, 4096),
        ("planes overlap", 52, 128),
    ];
    for &(what, offset, value) in cases {
        let mut bad = good.clone();
        poke(&mut bad, offset, value);
        assert!(VideoFrame::from_payload(&bad[..]).is_err(), "{what} accepted");
    }
    let mut bad = good.clone();
    bad[6..8].copy_from_slice(&60_000u16.to_ne_bytes());
    assert!(matches!(VideoFrame::from_payload(&bad[..]), Err(MediaError::BadHeaderSize { .. })));
    for len in [0, 1, 127, 128, good.len() - 1] {
        assert!(VideoFrame::from_payload(&good[..len]).is_err(), "truncated to {len} accepted");
    }
}

#[test]
fn lying_audio_headers_are_errors() {
    let consumer = ring(1 << 20);
    let mut producer = consumer.producer().unwrap();
    let meta = AudioMeta { sample_rate: 48_000, ..Default::default() };
    write_audio(&mut producer, &meta, AudioSamples::F32Planar(&[&[0.5; 100], &[0.25; 100]])).unwrap();
    let frame = consumer.recv().unwrap();
    assert!(AudioFrame::parse(&frame).is_ok());
    let good = frame.to_vec();
    let cases: &[(&str, usize, u32)] = &[
        ("format", 12, 7),
        ("rate zero", 32, 0),
        ("channels zero", 36, 0),
        ("channels many", 36, 33),
        ("frames beyond data", 40, 10_000),
        ("offset inside header", 44, 0),
        ("offset unaligned", 44, 65),
        ("offset past end", 44, !63u32),
        ("stride short", 48, 64),
        ("stride unaligned", 48, 401),
    ];
    for &(what, offset, value) in cases {
        let mut bad = good.to_vec();
        poke(&mut bad, offset, value);
        // Copy into an aligned buffer so only the header can be at fault.
        let mut aligned = vec![0u64; bad.len().div_ceil(8)];
        let view: &mut [u8] = &mut bytes_of(&mut aligned)[..bad.len()];
        view.copy_from_slice(&bad);
        assert!(AudioFrame::from_payload(&*view).is_err(), "{what} accepted");
    }
}

fn bytes_of(words: &mut [u64]) -> &mut [u8] {
    // SAFETY: u64 storage viewed as bytes: same memory, no invalid values,
    // the borrow is carried over.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 8) }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 16 } else { 2048 }, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_either_view(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = VideoFrame::from_payload(&bytes[..]);
        let _ = AudioFrame::from_payload(&bytes[..]);
    }

    /// A real header with random values in its fields: parsing either
    /// fails or yields slices that stay inside the payload.
    #[test]
    fn random_header_fields_never_escape_the_payload(
        fields in proptest::array::uniform16(any::<u32>()),
        small in proptest::array::uniform16(0u32..4096),
        mix in any::<u16>(),
        len in 0usize..8192,
    ) {
        let mut payload = valid_video();
        payload.resize(len.max(128), 0);
        for (i, (&wild, &tame)) in fields.iter().zip(&small).enumerate().skip(2) {
            let value = if mix & (1 << i) != 0 { wild } else { tame };
            poke(&mut payload, i * 4, value);
        }
        if let Ok(video) = VideoFrame::from_payload(&payload[..]) {
            let range = payload.as_ptr_range();
            for plane in 0..4 {
                let p = video.plane(plane);
                let (start, end) = (p.as_ptr(), p.as_ptr().wrapping_add(p.len()));
                prop_assert!(p.is_empty() || (start >= range.start && end <= range.end));
            }
        }
        let mut words = vec![0u64; payload.len().div_ceil(8)];
        let view = &mut bytes_of(&mut words)[..payload.len()];
        view.copy_from_slice(&payload);
        poke(view, 0, AUDIO_MAGIC);
        if let Ok(audio) = AudioFrame::from_payload(&*view) {
            let samples: usize = audio.channels_f32().map(|c| c.len()).sum::<usize>() + audio.s16().map_or(0, |s| s.len());
            prop_assert!(samples <= payload.len());
        }
    }
}
