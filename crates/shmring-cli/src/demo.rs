//! `shmring demo`: the recording bot in one command. A camera process and
//! a microphone process (this binary again) write 1080p30 I420 video and
//! 48 kHz stereo audio into one ring; this process is the encoder that
//! consumes the ring and feeds ffmpeg; then it says what happened.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shmring::{AccessPolicy, Consumer, RingOptions};

use crate::cli::DemoArgs;
use crate::encoder::{interrupt_flag, Encoder, EncoderConfig, StopRule};
use crate::failure::{Failure, Outcome};
use crate::process::{self, Exit};
use crate::size::human_capacity;

/// One capture process and what it reported.
struct Device {
    role: &'static str,
    child: std::process::Child,
    exit: Option<Exit>,
    tally: serde_json::Value,
}

fn check_ffmpeg(program: &std::path::Path) -> Outcome {
    match Command::new(program).arg("-version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(Failure::failed(format!("{} -version failed ({status})", program.display()))),
        Err(e) => Err(Failure::failed(format!(
            "cannot run {}: {e}; install Debian's ffmpeg package (apt-get install -y ffmpeg) or pass --ffmpeg PATH",
            program.display()
        ))),
    }
}

pub fn demo(args: DemoArgs) -> Outcome {
    check_ffmpeg(&args.encode.ffmpeg)?;
    let name = format!("demo-{}", std::process::id());
    let _span = tracing::info_span!("demo", ring = %name).entered();
    let options = RingOptions::with_capacity(args.capacity);
    let consumer = Consumer::create(&name, &options).map_err(|e| Failure::ring(&name, e))?;
    let _server = consumer.serve(AccessPolicy::default()).map_err(|e| Failure::ring(&name, e))?;
    let seconds = args.seconds.as_secs_f64();
    let switch = args.switch_to.map(|to| format!(" (then {to} after {:.1} s)", seconds / 2.0)).unwrap_or_default();
    println!(
        "shmring demo: camera {} I420 at 30 fps{switch} and microphone 48 kHz stereo, each its own process, \
         -> ring {name} of {} -> encoder -> ffmpeg (ultrafast x264, AAC) -> {}, for {seconds:.1} s",
        args.size,
        human_capacity(args.capacity),
        args.encode.output.display()
    );
    println!("  (look into the ring from another terminal: shmring stat {name}, shmring top {name})");

    let exe = std::env::current_exe()?;
    let inherited = consumer.fds().inheritable().map_err(|e| Failure::ring(&name, e))?;
    // Both devices start on the same tick, once attached and warmed up.
    let start_at_us = crate::capture::monotonic_us() + 500_000;
    let spawn = |role: &'static str, extra: Vec<String>| -> Result<Device, Failure> {
        let mut command = Command::new(&exe);
        command
            .arg(role)
            .arg("--seconds")
            .arg(format!("{seconds}s"))
            .arg("--start-at-us")
            .arg(start_at_us.to_string())
            .args(extra)
            .env("SHMRING_FD", inherited.spec())
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let child = command.spawn().map_err(|e| Failure::failed(format!("cannot start the {role}: {e}")))?;
        Ok(Device { role, child, exit: None, tally: serde_json::Value::Null })
    };
    let mut camera_args = vec!["--stream".to_string(), "1".to_string(), "--size".to_string(), args.size.to_string()];
    if let Some(to) = args.switch_to {
        camera_args.extend(["--switch-to".to_string(), to.to_string(), "--switch-at".to_string()]);
        camera_args.push(format!("{}s", seconds / 2.0));
    }
    let mut devices = vec![spawn("camera", camera_args)?, spawn("microphone", vec!["--stream".into(), "2".into()])?];
    // The children have their copies; ours would keep the ring alive in
    // nothing but this process anyway.
    drop(inherited);

    let stop = StopRule {
        deadline: Some(Instant::now() + args.seconds + Duration::from_secs(20)),
        when_producers_leave: true,
        interrupted: interrupt_flag()?,
        ..StopRule::default()
    };
    // One camera and one microphone: one file, no mix of a single voice.
    let config = EncoderConfig {
        video_stream: Some(1),
        audio_stream: Some(2),
        ffmpeg: args.encode.ffmpeg.clone(),
        splice: !args.encode.copy,
        mix: false,
        ..EncoderConfig::new(args.encode.output.clone())
    };
    let report = Encoder::new(&consumer, config).run(&stop, |p| eprintln!("{}", crate::encoder::progress_line(p)))?;

    println!();
    for device in &mut devices {
        device.exit = process::wait(device.child.id(), true).ok().flatten();
        let mut text = String::new();
        if let Some(stdout) = device.child.stdout.as_mut() {
            let _ = stdout.read_to_string(&mut text);
        }
        device.tally = text.lines().last().and_then(|l| serde_json::from_str(l).ok()).unwrap_or_default();
        println!(
            "  {:<15} pid {}: {} sent, {} dropped (ring full), {}",
            device.role,
            device.child.id(),
            device.tally["sent"],
            device.tally["dropped"],
            device.exit.as_ref().map_or("not reaped", |e| e.description.as_str())
        );
    }
    print!("{}", report.text());
    for device in &devices {
        let total = device.exit.as_ref().map_or(Duration::ZERO, |e| e.cpu);
        let producing = Duration::from_micros(device.tally["cpu_us"].as_u64().unwrap_or(0));
        let sent = device.tally["sent"].as_u64().unwrap_or(0);
        let (what, unit) = match device.role {
            "camera" => ("painting each frame in place", "frame"),
            _ => ("writing each chunk in place", "10 ms chunk"),
        };
        println!(
            "  CPU {:<11} {:.0} us per {unit} ({what}); {:.3} s in all with start-up and attach",
            device.role,
            crate::encoder::per(producing, sent),
            total.as_secs_f64()
        );
    }
    for segment in &report.segments {
        match crate::probe::probe(&segment.path) {
            Ok(probe) => println!("  ffprobe         {}: {probe}", segment.path.display()),
            Err(e) => println!("  ffprobe         {}: {e}", segment.path.display()),
        }
    }
    let lost = report.ring.drops + report.counters.video_dropped() + report.counters.audio_dropped();
    if let Some(failure) = &report.failure {
        return Err(Failure::failed(format!("the demo's recording failed: {failure}")));
    }
    if let Some(device) = devices.iter().find(|d| !d.exit.as_ref().is_some_and(|e| e.success)) {
        return Err(Failure::failed(format!("the {} process did not end cleanly", device.role)));
    }
    if report.segments.is_empty() {
        return Err(Failure::failed("no video reached the encoder"));
    }
    println!(
        "\n  {} of video in {} file(s), {lost} frames or chunks lost (all counted above)",
        format_args!("{:.1} s", report.frames_out() as f64 / 30.0),
        report.segments.len()
    );
    Ok(())
}
