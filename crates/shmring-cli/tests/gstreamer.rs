//! The GStreamer plugin (crates/gst-shmring) in real pipelines: the
//! synthetic camera and microphone write into a ring, `gst-launch-1.0`
//! runs `shmringsrc` into real encoders and muxers, and ffprobe and ffmpeg
//! check the files. GStreamer missing is a failure, not a skip
//! (`scripts/deps.sh` installs it).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{ffprobe, tally, wait_for, KillOnDrop, Run, Sandbox};

/// The plugin file cargo built beside the `shmring` binary (as this
/// crate's dev-dependency it lies in `deps/`; built on its own, one level
/// up): the newest of the two.
fn plugin_file() -> PathBuf {
    let profile_dir = Path::new(env!("CARGO_BIN_EXE_shmring")).parent().expect("the binary's directory");
    [profile_dir.join("libgstshmring.so"), profile_dir.join("deps/libgstshmring.so")]
        .into_iter()
        .filter_map(|path| Some((std::fs::metadata(&path).ok()?.modified().ok()?, path)))
        .max()
        .map(|(_, path)| path)
        .expect("cargo builds libgstshmring.so (gst-shmring is a dev-dependency)")
}

/// GStreamer for one test: a plugin directory holding only our plugin, a
/// registry of its own, the sandbox's ring runtime directory.
struct Gst<'a> {
    sandbox: &'a Sandbox,
    plugins: PathBuf,
}

impl<'a> Gst<'a> {
    fn new(sandbox: &'a Sandbox) -> Gst<'a> {
        let plugins = sandbox.path("gst-plugins");
        std::fs::create_dir_all(&plugins).expect("plugin directory");
        std::os::unix::fs::symlink(plugin_file(), plugins.join("libgstshmring.so")).expect("link the plugin");
        Gst { sandbox, plugins }
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command
            .env("GST_PLUGIN_PATH", &self.plugins)
            .env("GST_REGISTRY", self.sandbox.path("gst-registry.bin"))
            .env("SHMRING_RUNTIME_DIR", &self.sandbox.runtime)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// `gst-launch-1.0 -m PIPELINE` in the background (messages on
    /// stdout, where the element's statistics are posted).
    fn launch(&self, pipeline: &str) -> Child {
        self.command("gst-launch-1.0")
            .arg("-m")
            .args(pipeline.split_whitespace())
            .spawn()
            .expect("gst-launch-1.0 runs (Debian's gstreamer1.0-tools, installed by scripts/deps.sh)")
    }
}

/// Starts `pipeline` and waits until its `shmringsrc` is the consumer of
/// `ring`.
fn start_pipeline(sandbox: &Sandbox, gst: &Gst<'_>, ring: &str, pipeline: &str) -> Child {
    let child = gst.launch(pipeline);
    sandbox.wait_for_consumer(ring);
    child
}

/// Runs `pipeline` (which ends itself when the producers leave) with the
/// producer `shmring PRODUCER_ARGS` feeding `ring`; both must succeed.
/// Gives what the producer and the pipeline printed.
fn run_with_producer(sandbox: &Sandbox, ring: &str, pipeline: &str, producer_args: &[&str]) -> (Run, Run) {
    let gst = Gst::new(sandbox);
    let launched = start_pipeline(sandbox, &gst, ring, pipeline);
    let guard = KillOnDrop(launched.id());
    let producer = wait_for(sandbox.spawn(producer_args), Duration::from_secs(30), producer_args[0]);
    producer.succeeds();
    let run = wait_for(launched, Duration::from_secs(60), "gst-launch-1.0");
    guard.disarm();
    assert_pipeline_succeeded(&run);
    (producer, run)
}

/// Counter `name` of the last `shmringsrc-stats` message a pipeline
/// printed.
fn stat(run: &Run, name: &str) -> u64 {
    let line = run
        .stdout
        .lines()
        .rev()
        .find(|l| l.contains("shmringsrc-stats"))
        .unwrap_or_else(|| panic!("no statistics message:\n{}\n{}", run.stdout, run.stderr));
    let field = format!("{name}=(guint64)");
    line.split(&field)
        .nth(1)
        .and_then(|rest| rest.split([',', ';']).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{name} in {line}"))
}

fn assert_pipeline_succeeded(run: &Run) {
    assert_eq!(run.code, 0, "gst-launch-1.0 failed\nstdout: {}\nstderr: {}", run.stdout, run.stderr);
    assert!(run.stdout.contains("Got EOS"), "the stream ended with EOS: {}", run.stdout);
}

fn assert_close(what: &str, found: f64, expected: f64, tolerance: f64) {
    assert!((found - expected).abs() <= tolerance, "{what}: {found} expected {expected} +- {tolerance}");
}

#[test]
fn gst_inspect_lists_shmringsrc_and_its_properties() {
    let sandbox = Sandbox::new("inspect");
    let gst = Gst::new(&sandbox);
    let output =
        gst.command("gst-inspect-1.0").arg("shmringsrc").output().expect("gst-inspect-1.0 runs (gstreamer1.0-tools)");
    let run = Run::from(output, &["gst-inspect-1.0 shmringsrc"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    for needle in [
        "Source/Video/Audio",
        "GstPushSrc",
        "libgstshmring.so",
        "video/x-raw",
        "audio/x-raw",
        "non-interleaved",
        "ring ",
        "fd-spec",
        "stream ",
        "kind ",
        "max-held",
        "timeout",
        "eos-when-producers-leave",
        "stats",
        "copied-held",
        "do-timestamp",
    ] {
        assert!(run.stdout.contains(needle), "gst-inspect-1.0 shmringsrc lacks {needle:?}:\n{}", run.stdout);
    }
}

#[test]
fn camera_frames_go_in_place_through_x264_into_an_mp4() {
    let sandbox = Sandbox::new("gst-mp4");
    let ring = sandbox.ring("cam");
    let out = sandbox.path("camera.mp4");
    sandbox.run(&["create", &ring, "--capacity", "256MiB"]).succeeds();
    let pipeline = format!(
        "shmringsrc ring={ring} eos-when-producers-leave=true ! videoconvert ! x264enc tune=zerolatency \
         speed-preset=ultrafast ! mp4mux ! filesink location={}",
        out.display()
    );
    let (camera, run) = run_with_producer(
        &sandbox,
        &ring,
        &pipeline,
        &["camera", "--ring", &ring, "--seconds", "4", "--size", "1280x720"],
    );
    let (sent, dropped) = tally(&camera);

    assert_eq!(stat(&run, "buffers"), sent, "every frame the camera sent was pushed");
    assert_eq!(stat(&run, "in-place") + stat(&run, "copied-held") + stat(&run, "copied-layout"), sent);
    assert!(stat(&run, "in-place") > 0, "frames go in place: {}", run.stdout);
    assert_eq!(stat(&run, "missing"), dropped, "frames dropped by the camera are the gaps seen");
    let probed = ffprobe(&out);
    let (width, height, fps, frames) = probed.video.expect("a video stream");
    assert_eq!((width, height), (1280, 720));
    assert_close("frame rate", fps, 30.0, 0.1);
    assert_eq!(frames, sent, "one encoded frame per frame sent");
    assert_close("duration", probed.duration, sent as f64 / 30.0, 0.1);
    // The frames in the file are the camera's, in order: none torn,
    // repeated or reordered on the way through the ring.
    let numbers = common::painted_frame_numbers(&out, 1280);
    assert_eq!(numbers.len() as u64, frames);
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "painted frame numbers increase: {numbers:?}");
    assert_eq!(numbers.first(), Some(&0));
    sandbox.run(&["rm", &ring]).succeeds();
}

#[test]
fn microphone_chunks_are_written_to_a_wav_sample_for_sample() {
    let sandbox = Sandbox::new("gst-wav");
    let ring = sandbox.ring("mic");
    let out = sandbox.path("microphone.wav");
    sandbox.run(&["create", &ring, "--capacity", "16MiB"]).succeeds();
    let pipeline = format!(
        "shmringsrc ring={ring} kind=audio eos-when-producers-leave=true ! audioconvert ! \
         audio/x-raw,format=F32LE,layout=interleaved ! wavenc ! filesink location={}",
        out.display()
    );
    let (microphone, run) =
        run_with_producer(&sandbox, &ring, &pipeline, &["microphone", "--ring", &ring, "--seconds", "3"]);
    assert_eq!(tally(&microphone), (300, 0), "{}", microphone.stdout);
    assert_eq!(stat(&run, "buffers"), 300);

    let probed = ffprobe(&out);
    assert_eq!(probed.audio.as_ref().map(|(codec, rate)| (codec.as_str(), *rate)), Some(("pcm_f32le", 48_000)));
    assert_close("duration", probed.duration, 3.0, 0.001);
    // Every sample is the microphone's: channel c is a sine at
    // 220 * (c + 2) Hz, 0.2 high, from sample 0 (capture/microphone).
    let decoded = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&out)
        .args(["-f", "f32le", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(decoded.status.success());
    let samples: Vec<f32> =
        decoded.stdout.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect();
    assert_eq!(samples.len(), 3 * 48_000 * 2);
    for (i, pair) in samples.chunks_exact(2).enumerate() {
        for (channel, &sample) in pair.iter().enumerate() {
            let step = std::f64::consts::TAU * 220.0 * (channel as f64 + 2.0) / 48_000.0;
            let expected = (0.2 * (i as f64 * step).sin()) as f32;
            assert!((sample - expected).abs() < 1e-6, "sample {i} channel {channel}: {sample} expected {expected}");
        }
    }
    sandbox.run(&["rm", &ring]).succeeds();
}

#[test]
fn a_size_change_mid_stream_renegotiates_and_the_file_stays_valid() {
    let sandbox = Sandbox::new("gst-switch");
    let ring = sandbox.ring("switch");
    let out = sandbox.path("switch.mp4");
    sandbox.run(&["create", &ring, "--capacity", "128MiB"]).succeeds();
    let pipeline = format!(
        "shmringsrc ring={ring} eos-when-producers-leave=true ! videoconvert ! videoscale ! \
         video/x-raw,width=640,height=360 ! x264enc tune=zerolatency speed-preset=ultrafast ! mp4mux ! \
         filesink location={}",
        out.display()
    );
    let (camera, run) = run_with_producer(
        &sandbox,
        &ring,
        &pipeline,
        &[
            "camera",
            "--ring",
            &ring,
            "--seconds",
            "4",
            "--size",
            "1280x720",
            "--switch-to",
            "960x540",
            "--switch-at",
            "2s",
        ],
    );
    let (sent, _) = tally(&camera);
    assert_eq!(stat(&run, "renegotiations"), 1, "one size change: {}", run.stdout);
    assert!(stat(&run, "discont") >= 2, "the first buffer of each size is DISCONT");
    // 960 pixels wide: chroma rows of 480 bytes are padded to 512 in the
    // ring (GStreamer's default is 480), so those frames carry a VideoMeta
    // (videoconvert reads it) instead of being copied.
    assert_eq!(stat(&run, "copied-layout"), 0, "{}", run.stdout);
    assert!(stat(&run, "video-meta") >= sent / 3, "the 960x540 frames: {}", run.stdout);
    assert_eq!(stat(&run, "buffers"), sent);

    let probed = ffprobe(&out);
    let (width, height, _, frames) = probed.video.expect("a video stream");
    assert_eq!((width, height), (640, 360));
    assert_eq!(frames, sent);
    assert_close("duration", probed.duration, sent as f64 / 30.0, 0.1);
    let numbers = common::painted_frame_numbers(&out, 640);
    assert_eq!(numbers.len() as u64, frames);
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "in order across the size change: {numbers:?}");
    assert!(numbers.contains(&59) && numbers.contains(&60), "frames both sides of the switch at 2 s: {numbers:?}");
    sandbox.run(&["rm", &ring]).succeeds();
}

#[test]
fn a_slow_element_gets_copies_and_the_ring_keeps_flowing() {
    let sandbox = Sandbox::new("gst-slow");
    let ring = sandbox.ring("slow");
    // About 45 frames of 640x360 fit: far fewer than the camera sends
    // while the slow element works through its queue.
    sandbox.run(&["create", &ring, "--capacity", "16MiB"]).succeeds();
    let pipeline = format!(
        "shmringsrc ring={ring} eos-when-producers-leave=true max-held=8 ! queue max-size-buffers=0 \
         max-size-bytes=0 max-size-time=0 ! identity sleep-time=40000 ! fakesink"
    );
    let (camera, run) = run_with_producer(
        &sandbox,
        &ring,
        &pipeline,
        &["camera", "--ring", &ring, "--seconds", "4", "--size", "640x360"],
    );
    let (sent, dropped) = tally(&camera);
    assert_eq!(dropped, 0, "the ring never filled: {}", camera.stdout);
    assert_eq!(stat(&run, "buffers"), sent);
    assert!(stat(&run, "copied-held") > 0, "frames past max-held were copied: {}", run.stdout);
    assert!(stat(&run, "in-place") > 0, "{}", run.stdout);
    assert_eq!(stat(&run, "missing"), 0);
    sandbox.run(&["rm", &ring]).succeeds();
}

#[test]
fn a_killed_producer_and_a_removed_ring_end_the_pipeline_with_an_error() {
    let sandbox = Sandbox::new("gst-kill");
    let gst = Gst::new(&sandbox);
    let ring = sandbox.ring("kill");
    sandbox.run(&["create", &ring, "--capacity", "32MiB"]).succeeds();
    let launched = start_pipeline(&sandbox, &gst, &ring, &format!("shmringsrc ring={ring} ! fakesink"));
    let guard = KillOnDrop(launched.id());
    let mut camera = sandbox.spawn(&["camera", "--ring", &ring, "--seconds", "30", "--size", "640x360"]);
    std::thread::sleep(Duration::from_secs(2));
    camera.kill().expect("kill the camera");
    let _ = camera.wait();
    sandbox.run(&["rm", &ring]).succeeds();
    let removed = Instant::now();
    let run = wait_for(launched, Duration::from_secs(20), "gst-launch-1.0");
    guard.disarm();
    assert_eq!(run.code, 1, "gst-launch-1.0 ends with an error, not a crash\n{}\n{}", run.stdout, run.stderr);
    // An error message posted by the element, with its text: gst-launch
    // prints "ERROR: from element /GstPipeline:pipeline0/GstShmringSrc:...".
    let message = format!("ring {ring:?} was removed");
    let output = format!("{}\n{}", run.stdout, run.stderr);
    assert!(
        output
            .lines()
            .any(|l| l.contains("ERROR: from element") && l.contains("GstShmringSrc") && l.contains(&message)),
        "{output}"
    );
    assert!(!output.contains("Segmentation fault") && !output.contains("panicked"), "{output}");
    assert!(removed.elapsed() < Duration::from_secs(5), "the error came {:?} after the removal", removed.elapsed());
}
