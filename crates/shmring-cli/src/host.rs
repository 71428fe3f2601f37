//! Named rings that outlive the command that made them: `create` starts a
//! holder process (`hold`) that keeps the segment and serves it by name; `rm` stops it; `gc` clears what crashed owners left.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shmring::{AccessPolicy, HugePages, RingHost, RingOptions};

use crate::cli::{CreateArgs, GcArgs, HoldArgs, RingShape, RmArgs};
use crate::failure::{code, Failure, Outcome};
use crate::process;
use crate::size::human_capacity;

/// What a command needs to create a ring of this shape.
pub fn ring_options(shape: &RingShape) -> RingOptions {
    RingOptions {
        hugepages: if shape.hugepages { HugePages::IfAvailable } else { HugePages::Never },
        prefault: shape.prefault,
        ..RingOptions::with_capacity(shape.capacity)
    }
}

pub fn create(args: CreateArgs) -> Outcome {
    shmring::validate_name(&args.name).map_err(|e| Failure::ring(&args.name, e))?;
    if args.foreground {
        return hold_ring(&args.name, &args.shape, None);
    }
    let (mut ready_read, ready_write) = pipe_files()?;
    let mut command = Command::new(std::env::current_exe()?);
    command.arg("hold").arg(&args.name).arg("--capacity").arg(args.shape.capacity.to_string());
    if args.shape.hugepages {
        command.arg("--hugepages");
    }
    if args.shape.prefault {
        command.arg("--prefault");
    }
    command.arg("--ready-fd").arg(ready_write.as_raw_fd().to_string());
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    process::inherit(&mut command, &ready_write);
    process::detach(&mut command);
    let child = command.spawn().map_err(|e| Failure::failed(format!("cannot start the ring holder: {e}")))?;
    drop(ready_write);
    let mut answer = String::new();
    ready_read.read_to_string(&mut answer)?;
    // The holder is a daemon now; its exit is reaped by init.
    drop(child);
    let answer = answer.trim();
    if let Some(rest) = answer.strip_prefix("ready ") {
        println!(
            "ring {}: {} of data, held by pid {rest}; remove it with `shmring rm {}`",
            args.name,
            human_capacity(args.shape.capacity),
            args.name
        );
        return Ok(());
    }
    match answer.strip_prefix("error ").and_then(|rest| rest.split_once(' ')) {
        Some((code, message)) => Err(Failure::new(code.parse().unwrap_or(code::FAILED), message)),
        None => Err(Failure::failed(format!("the ring holder ended without creating the ring ({answer:?})"))),
    }
}

pub fn hold(args: HoldArgs) -> Outcome {
    // SAFETY: the parent (`create`) passed this descriptor for us alone.
    let ready = args.ready_fd.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
    hold_ring(&args.name, &args.shape, ready)
}

/// Creates ring `name`, serves it by name, tells `ready` (if any) and
/// holds it until SIGTERM, SIGINT or SIGHUP.
fn hold_ring(name: &str, shape: &RingShape, ready: Option<OwnedFd>) -> Outcome {
    let mut ready = ready.map(std::fs::File::from);
    let mut signals = signal_hook::iterator::Signals::new([libc::SIGTERM, libc::SIGINT, libc::SIGHUP])?;
    let started = (|| {
        let host = RingHost::create(name, &ring_options(shape)).map_err(|e| Failure::ring(name, e))?;
        let server = host.serve(AccessPolicy::default()).map_err(|e| Failure::ring(name, e))?;
        Ok::<_, Failure>((host, server))
    })();
    let (host, server) = match started {
        Ok(started) => started,
        Err(failure) => {
            if let Some(ready) = ready.as_mut() {
                let _ = writeln!(ready, "error {} {}", failure.code, failure.message);
            }
            return Err(failure);
        }
    };
    tracing::info!(ring = name, capacity = host.geometry().capacity, "holding ring");
    match ready.take() {
        Some(mut ready) => {
            let _ = writeln!(ready, "ready {}", std::process::id());
        }
        None => println!(
            "ring {name}: {} of data, held by this process (pid {}) until Ctrl-C",
            human_capacity(host.geometry().capacity),
            std::process::id()
        ),
    }
    let signal = signals.forever().next();
    tracing::info!(ring = name, ?signal, "releasing ring");
    drop(server);
    drop(host);
    Ok(())
}

fn pipe_files() -> Result<(std::fs::File, OwnedFd), Failure> {
    let (read, write) = process::pipe()?;
    Ok((std::fs::File::from(read), write))
}

pub fn remove(args: RmArgs) -> Outcome {
    let name = &args.name;
    shmring::validate_name(name).map_err(|e| Failure::ring(name, e))?;
    let Some(found) = shmring::leftovers::scan().into_iter().find(|l| &l.name == name) else {
        return Err(Failure::new(code::NO_SUCH_RING, format!("no ring named {name:?} on this machine")));
    };
    match found.owner_pid {
        Some(pid) if found.owner_alive => {
            let cmdline = process::command_line(pid).unwrap_or_default();
            let is_holder = cmdline.contains("shmring") && cmdline.split_whitespace().any(|a| a == "hold");
            if !is_holder && !args.force {
                return Err(Failure::new(
                    code::IN_USE,
                    format!(
                        "ring {name:?} is owned by live process {pid} ({cmdline}), not by `shmring create`: \
                         stop that process, or pass --force to send it SIGTERM"
                    ),
                ));
            }
            process::kill(pid, libc::SIGTERM).map_err(|e| Failure::failed(format!("cannot stop pid {pid}: {e}")))?;
            let deadline = Instant::now() + Duration::from_secs(10);
            while owner_alive(name) {
                if Instant::now() > deadline {
                    return Err(Failure::failed(format!("pid {pid} still holds ring {name:?} 10 s after SIGTERM")));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            println!("removed ring {name} (stopped pid {pid})");
        }
        _ => {
            let removed = shmring::leftovers::remove(name).map_err(|e| Failure::ring(name, e))?;
            println!("removed leftovers of ring {name} (owner {}): {}", owner_text(found.owner_pid), paths(&removed));
        }
    }
    Ok(())
}

fn owner_alive(name: &str) -> bool {
    shmring::leftovers::scan().iter().any(|l| l.name == name && l.owner_alive)
}

pub fn gc(args: GcArgs) -> Outcome {
    let found = shmring::leftovers::scan();
    if found.is_empty() {
        println!("no leftovers");
        return Ok(());
    }
    for leftover in &found {
        let owner = owner_text(leftover.owner_pid);
        if leftover.owner_alive {
            println!("kept     {:<24} owner {owner} is alive", leftover.name);
            continue;
        }
        if let Some(pid) = leftover.mapped_by {
            println!("kept     {:<24} owner {owner}, but pid {pid} maps its segment", leftover.name);
            continue;
        }
        if args.dry_run {
            println!("stale    {:<24} owner {owner}: {}", leftover.name, paths(&leftover.paths));
            continue;
        }
        match shmring::leftovers::remove(&leftover.name) {
            Ok(removed) => println!("removed  {:<24} owner {owner}: {}", leftover.name, paths(&removed)),
            Err(e) => println!("kept     {:<24} {e}", leftover.name),
        }
    }
    Ok(())
}

fn owner_text(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("pid {pid}"),
        None => "unknown".to_string(),
    }
}

fn paths(paths: &[std::path::PathBuf]) -> String {
    if paths.is_empty() {
        return "nothing left".to_string();
    }
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}
