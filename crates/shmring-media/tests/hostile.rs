//! A producer rewrites a frame after the consumer checked it: the view keeps
//! the geometry it checked, reads only inside the record, and copies out
//! whatever the pixels or samples are now. The rewrites go through the
//! segment's descriptor, so they reach the consumer's mapping as a
//! producer process's writes do.

use std::mem::offset_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use shmring::{Consumer, Frame, RingConsumer, RingOptions};
use shmring_media::sys::{shmring_audio_header as AudioHeader, shmring_video_header as VideoHeader};
use shmring_media::*;

fn ring() -> RingConsumer {
    Consumer::create_anonymous(&RingOptions::with_capacity(1 << 20)).expect("create ring")
}

/// Where the payload of `frame` lies in the segment file.
fn payload_at(consumer: &RingConsumer, frame: &Frame<'_, shmring::MappedRing>) -> u64 {
    let geometry = consumer.geometry();
    geometry.header_size + frame.position() % geometry.capacity + shmring::layout::RECORD_HEADER_SPAN
}

/// Writes `bytes` at `at` of the segment file.
fn rewrite(segment: BorrowedFd<'_>, at: u64, bytes: &[u8]) {
    // SAFETY: writes from a live slice into the sealed segment file.
    let written = unsafe { libc::pwrite(segment.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), at as i64) };
    assert_eq!(written, bytes.len() as isize, "pwrite into the segment");
}

/// Every row of every plane of `video`, copied out, each checked to lie
/// inside `record`.
fn copy_rows(video: &VideoFrame<'_>, record: shmring::SharedBytes<'_>) -> Vec<Vec<u8>> {
    let range = record.as_ptr() as usize..record.as_ptr() as usize + record.len();
    let mut rows = Vec::new();
    for plane in 0..video.plane_count() {
        for r in 0.. {
            let Some(row) = video.row(plane, r) else { break };
            let start = row.as_ptr() as usize;
            assert!(
                range.contains(&start) && start + row.len() <= range.end,
                "plane {plane} row {r} outside the record"
            );
            rows.push(row.to_vec());
        }
    }
    rows
}

#[test]
fn rewritten_video_header_leaves_the_checked_geometry_and_bounds() {
    let consumer = ring();
    let mut producer = consumer.producer().unwrap();
    let (y, chroma) = (vec![16u8; 64 * 48], vec![128u8; 32 * 24]);
    let planes =
        I420Planes { width: 64, height: 48, y: &y, y_stride: 64, u: &chroma, u_stride: 32, v: &chroma, v_stride: 32 };
    write_video_i420(&mut producer, &VideoMeta { stream_id: 4, timestamp_us: 0, frame_number: 9 }, &planes).unwrap();
    let frame = consumer.recv().unwrap();
    let video = VideoFrame::parse(&frame).unwrap();
    let checked: Vec<_> = (0..4).map(|p| (video.stride(p), video.plane(p).len())).collect();

    // The header now claims a huge frame with planes far outside the
    // record, and every pixel changes.
    let (segment, at) = (consumer.fds().memfd.as_fd(), payload_at(&consumer, &frame));
    let field = |offset: usize| at + offset as u64;
    rewrite(segment, field(offset_of!(VideoHeader, width)), &32_767u32.to_ne_bytes());
    rewrite(segment, field(offset_of!(VideoHeader, height)), &32_767u32.to_ne_bytes());
    rewrite(segment, field(offset_of!(VideoHeader, stream_id)), &77u32.to_ne_bytes());
    let huge: Vec<u8> = [0xffff_ffc0u32; 8].iter().flat_map(|v| v.to_ne_bytes()).collect();
    rewrite(segment, field(offset_of!(VideoHeader, plane_offset)), &huge); // offsets and strides
    let pixels = frame.len() - VIDEO_HEADER_SIZE;
    rewrite(segment, field(VIDEO_HEADER_SIZE), &vec![0xee; pixels]);
    assert!(VideoFrame::parse(&frame).is_err(), "the rewrite reached the consumer's mapping");

    assert_eq!((video.width(), video.height(), video.stream_id()), (64, 48, 4));
    assert_eq!((0..4).map(|p| (video.stride(p), video.plane(p).len())).collect::<Vec<_>>(), checked);
    let rows = copy_rows(&video, frame.bytes());
    assert_eq!(rows.len(), 48 + 24 + 24, "the checked rows, no more");
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.len(), if i < 48 { 64 } else { 32 });
        assert!(row.iter().all(|&b| b == 0xee), "row {i} copied as it is now");
    }
}

#[test]
fn rewritten_audio_header_leaves_the_checked_layout_and_bounds() {
    let consumer = ring();
    let mut producer = consumer.producer().unwrap();
    let (left, right) = (vec![0.5f32; 100], vec![-0.5f32; 100]);
    let meta = AudioMeta { stream_id: 1, sample_rate: 48_000, ..AudioMeta::default() };
    write_audio(&mut producer, &meta, AudioSamples::F32Planar(&[&left, &right])).unwrap();
    let frame = consumer.recv().unwrap();
    let audio = AudioFrame::parse(&frame).unwrap();

    let (segment, at) = (consumer.fds().memfd.as_fd(), payload_at(&consumer, &frame));
    let field = |offset: usize| at + offset as u64;
    rewrite(segment, field(offset_of!(AudioHeader, channels)), &32u32.to_ne_bytes());
    rewrite(segment, field(offset_of!(AudioHeader, frame_count)), &u32::MAX.to_ne_bytes());
    rewrite(segment, field(offset_of!(AudioHeader, channel_stride)), &0xffff_ffc0u32.to_ne_bytes());
    let samples: Vec<u8> =
        std::iter::repeat_n(2.0f32.to_ne_bytes(), (frame.len() - AUDIO_HEADER_SIZE) / 4).flatten().collect();
    rewrite(segment, field(AUDIO_HEADER_SIZE), &samples);
    assert!(AudioFrame::parse(&frame).is_err(), "the rewrite reached the consumer's mapping");

    assert_eq!((audio.channels(), audio.frame_count()), (2, 100));
    let channels: Vec<Vec<f32>> = audio.channels_f32().map(|c| c.to_vec()).collect();
    assert_eq!(channels, vec![vec![2.0f32; 100]; 2], "the checked channels, copied as they are now");
    assert!(audio.channel_f32(2).is_none());
}

#[test]
fn checking_and_copying_a_frame_while_the_producer_rewrites_it_stays_in_bounds() {
    let consumer = ring();
    let mut producer = consumer.producer().unwrap();
    let mut slot = reserve_video(&mut producer, &VideoMeta::default(), PixelFormat::I420, 128, 64).unwrap();
    for plane in slot.planes_mut() {
        plane.fill(1);
    }
    slot.commit();
    let frame = consumer.recv().unwrap();
    let (segment, at) = (consumer.fds().memfd.as_fd(), payload_at(&consumer, &frame));
    let good = frame.to_vec();
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            // Alternates the real header with one whose planes and size lie,
            // and rewrites the pixels, until the reader is done.
            let mut lying = good[..VIDEO_HEADER_SIZE].to_vec();
            for (offset, value) in [(32, 32_767u32), (36, 9), (52, 1 << 30), (64, 64), (68, 0xffff_ffc0)] {
                lying[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
            }
            let mut round = 0u8;
            while !stop.load(Ordering::Relaxed) {
                round = round.wrapping_add(1);
                let header = if round % 2 == 0 { &good[..VIDEO_HEADER_SIZE] } else { &lying[..] };
                rewrite(segment, at, header);
                rewrite(segment, at + VIDEO_HEADER_SIZE as u64, &vec![round; good.len() - VIDEO_HEADER_SIZE]);
            }
        });
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..2_000 {
            match VideoFrame::parse(&frame) {
                Ok(video) => {
                    // The header read may mix both versions, but it passed
                    // the checks, and the view holds to what was checked
                    // while the header goes on changing.
                    let (width, height) = (video.width(), video.height());
                    let expected_rows: u64 = (0..video.plane_count())
                        .map(|p| video.format().plane_geometry(p, width, height).expect("a plane of the format").1)
                        .sum();
                    assert_eq!(copy_rows(&video, frame.bytes()).len() as u64, expected_rows);
                    assert_eq!((video.width(), video.height()), (width, height));
                    accepted += 1;
                }
                Err(_) => refused += 1,
            }
        }
        stop.store(true, Ordering::Relaxed);
        eprintln!("{accepted} parses accepted, {refused} refused");
    });
}
