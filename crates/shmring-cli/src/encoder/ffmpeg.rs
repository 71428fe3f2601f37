//! One ffmpeg process per output file: raw video on one pipe, raw audio on
//! another, both written without blocking so that neither can stall the
//! other (or the ring).

use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;

use shmring_media::PixelFormat;

use crate::process::{self, Exit};

/// The raw formats ffmpeg reads and what it writes.
#[derive(Clone, Debug)]
pub struct SegmentFormat {
    /// `None`: an audio-only file (the mix).
    pub video: Option<VideoFormat>,
    pub sample_rate: u32,
    pub channels: u32,
    pub preset: String,
}

/// Raw video as ffmpeg reads it.
#[derive(Clone, Copy, Debug)]
pub struct VideoFormat {
    pub pixel_format: PixelFormat,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

/// ffmpeg's name for a pixel format.
pub fn ffmpeg_pix_fmt(format: PixelFormat) -> &'static str {
    match format {
        PixelFormat::I420 => "yuv420p",
        PixelFormat::Nv12 => "nv12",
        PixelFormat::Rgba => "rgba",
        PixelFormat::Bgra => "bgra",
    }
}

/// The descriptor numbers ffmpeg reads video and audio from.
const VIDEO_FD: RawFd = 3;
const AUDIO_FD: RawFd = 4;

/// The arguments of one encoding ffmpeg.
pub fn arguments(format: &SegmentFormat, output: &Path) -> Vec<String> {
    let mut args: Vec<String> = ["-hide_banner", "-nostdin", "-loglevel", "error", "-y"].map(String::from).to_vec();
    let mut push = |more: &[&str]| args.extend(more.iter().map(|s| s.to_string()));
    if let Some(video) = &format.video {
        push(&[
            "-f",
            "rawvideo",
            "-pix_fmt",
            ffmpeg_pix_fmt(video.pixel_format),
            "-video_size",
            &format!("{}x{}", video.width, video.height),
            "-framerate",
            &video.fps.to_string(),
            "-thread_queue_size",
            "64",
            // The formats are given: no probing (it would wait for seconds of audio).
            "-probesize",
            "32",
            "-analyzeduration",
            "0",
            "-i",
            &format!("pipe:{VIDEO_FD}"),
        ]);
    }
    push(&[
        "-f",
        "f32le",
        "-ar",
        &format.sample_rate.to_string(),
        "-ac",
        &format.channels.to_string(),
        "-thread_queue_size",
        "1024",
        "-probesize",
        "32",
        "-analyzeduration",
        "0",
        "-i",
        &format!("pipe:{AUDIO_FD}"),
    ]);
    if format.video.is_some() {
        push(&["-map", "0:v:0", "-map", "1:a:0", "-c:v", "libx264", "-preset", &format.preset, "-pix_fmt", "yuv420p"]);
    } else {
        push(&["-map", "0:a:0"]);
    }
    push(&["-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart"]);
    args.push(output.display().to_string());
    args
}

/// A running ffmpeg and the write ends of its input pipes.
pub struct Ffmpeg {
    pid: u32,
    pub video: Option<OwnedFd>,
    pub audio: Option<OwnedFd>,
    stderr: Option<JoinHandle<String>>,
    exit: Option<Exit>,
}

impl Ffmpeg {
    /// Starts `program` encoding `format` into `output`.
    pub fn spawn(program: &Path, format: &SegmentFormat, output: &Path) -> io::Result<Ffmpeg> {
        let (video_read, video_write) = match format.video {
            Some(_) => {
                let (read, write) = process::pipe()?;
                (Some(above(read, 10)?), Some(write))
            }
            None => (None, None),
        };
        let (audio_read, audio_write) = process::pipe()?;
        // Above the numbers the child uses, so one dup2 cannot clobber the other.
        let audio_read = above(audio_read, 10)?;
        for fd in video_write.iter().chain([&audio_write]) {
            set_nonblocking(fd)?;
            // Fewer, larger writes: 1 MiB pipes (the default limit for
            // unprivileged users); a smaller pipe is fine if refused.
            // SAFETY: F_SETPIPE_SZ on a pipe we own.
            unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
        }
        let mut command = Command::new(program);
        command.args(arguments(format, output)).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        if let Some(video_read) = &video_read {
            process::inherit_as(&mut command, video_read.as_raw_fd(), VIDEO_FD);
        }
        process::inherit_as(&mut command, audio_read.as_raw_fd(), AUDIO_FD);
        let mut child = command.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot run {}: {e} (install Debian's ffmpeg package: apt-get install -y ffmpeg)",
                    program.display()
                ),
            )
        })?;
        drop((video_read, audio_read));
        let stderr = child.stderr.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = pipe.read_to_string(&mut text);
                text
            })
        });
        tracing::debug!(pid = child.id(), output = %output.display(), "ffmpeg started");
        Ok(Ffmpeg { pid: child.id(), video: video_write, audio: Some(audio_write), stderr, exit: None })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Closes both inputs: ffmpeg finishes the file and exits.
    pub fn close_inputs(&mut self) {
        self.video = None;
        self.audio = None;
    }

    /// Whether ffmpeg has exited (reaping it if so).
    pub fn poll_exit(&mut self) -> Option<&Exit> {
        if self.exit.is_none() {
            if let Ok(Some(exit)) = process::wait(self.pid, false) {
                self.exit = Some(exit);
            }
        }
        self.exit.as_ref()
    }

    /// Kills ffmpeg (unless it has already exited) and waits for it.
    pub fn abort(mut self) -> (Option<Exit>, String) {
        if self.poll_exit().is_none() {
            let _ = process::kill(self.pid, libc::SIGKILL);
        }
        self.wait()
    }

    /// Waits for ffmpeg to exit; returns how it ended and the end of what
    /// it printed on stderr.
    pub fn wait(mut self) -> (Option<Exit>, String) {
        self.close_inputs();
        if self.exit.is_none() {
            self.exit = process::wait(self.pid, true).ok().flatten();
        }
        let text = self.stderr.take().and_then(|t| t.join().ok()).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(6).collect();
        let tail = tail.into_iter().rev().collect::<Vec<_>>().join(" | ");
        (self.exit.take(), tail)
    }
}

impl Drop for Ffmpeg {
    fn drop(&mut self) {
        if self.exit.is_none() {
            self.close_inputs();
            let _ = process::wait(self.pid, true);
        }
    }
}

fn above(fd: OwnedFd, minimum: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC duplicates a descriptor we own.
    let raw = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, minimum) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on a descriptor we own.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_name_both_pipes_and_the_raw_formats() {
        let video = VideoFormat { pixel_format: PixelFormat::I420, width: 1280, height: 720, fps: 30 };
        let format = SegmentFormat { video: Some(video), sample_rate: 48_000, channels: 2, preset: "ultrafast".into() };
        let args = arguments(&format, Path::new("x.mp4")).join(" ");
        assert!(args.contains("-f rawvideo -pix_fmt yuv420p -video_size 1280x720 -framerate 30"), "{args}");
        assert!(args.contains("-i pipe:3") && args.contains("-i pipe:4"), "{args}");
        assert!(args.contains("-f f32le -ar 48000 -ac 2"), "{args}");
        assert!(args.ends_with("x.mp4"));
        let mix = arguments(&SegmentFormat { video: None, ..format }, Path::new("mix.m4a")).join(" ");
        assert!(!mix.contains("pipe:3") && !mix.contains("libx264") && mix.contains("-i pipe:4 -map 0:a:0"), "{mix}");
    }
}
