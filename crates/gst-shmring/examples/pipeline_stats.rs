//! Runs a pipeline written as for `gst-launch-1.0` (with `shmringsrc`
//! registered in-process) until standard input closes. Each line read, and
//! the close, prints one JSON line: the buffers each sink rendered and each
//! `shmringsrc`'s statistics. The CPU benchmark (`scripts/bench-gst.sh`) measures such a
//! process from outside and reads the line to check that every frame came
//! through and how many were copied; nothing here runs per buffer.
//!
//! ```text
//! pipeline_stats 'shmringsrc ring=bot-17 ! fakesink'
//! ready
//! (a line, or close stdin)
//! {"sinks":{"fakesink0":300},"sources":{"shmringsrc0":{"buffers":300,"in-place":300,...}}}
//! ```
//!
//! With `--paused` first, the pipeline waits in PAUSED (a source's ring
//! is attached, nothing flows) until the first line, then plays: frames
//! that waited in the ring go through back to back.
//!
//! An error message on the bus ends the process with status 1 and the
//! error on standard error.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use gst::prelude::*;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pipeline_stats: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).peekable();
    let paused = args.next_if_eq("--paused").is_some();
    let description = args.collect::<Vec<_>>().join(" ");
    if description.is_empty() {
        return Err("usage: pipeline_stats [--paused] PIPELINE (as for gst-launch-1.0)".into());
    }
    gst::init()?;
    gstshmring::plugin_register_static()?;
    let pipeline = gst::parse::launch(&description)?.downcast::<gst::Pipeline>().map_err(|_| "not a pipeline")?;
    let bus = pipeline.bus().ok_or("a pipeline has a bus")?;
    std::thread::spawn(move || {
        for message in bus.iter_timed(gst::ClockTime::NONE) {
            if let gst::MessageView::Error(error) = message.view() {
                eprintln!(
                    "pipeline_stats: error from {:?}: {} ({:?})",
                    error.src().map(|s| s.path_string()),
                    error.error(),
                    error.debug()
                );
                std::process::exit(1);
            }
        }
    });
    let first = if paused { gst::State::Paused } else { gst::State::Playing };
    pipeline.set_state(first)?;
    let (changed, _, _) = pipeline.state(gst::ClockTime::from_seconds(30));
    changed?;
    println!("ready");
    std::io::stdout().flush()?;
    for (index, line) in std::io::stdin().lock().lines().enumerate() {
        line?;
        if paused && index == 0 {
            pipeline.set_state(gst::State::Playing)?;
            continue;
        }
        println!("{}", statistics(&pipeline));
        std::io::stdout().flush()?;
    }
    let last = statistics(&pipeline);
    pipeline.set_state(gst::State::Null)?;
    println!("{last}");
    Ok(())
}

/// The JSON line: `rendered` of every sink's `stats`, and every unsigned
/// counter of every `shmringsrc`'s `stats`.
fn statistics(pipeline: &gst::Pipeline) -> String {
    let mut sinks = Vec::new();
    let mut sources = Vec::new();
    for element in pipeline.iterate_recurse().into_iter().flatten() {
        let factory = element.factory().map(|f| f.name().to_string()).unwrap_or_default();
        if element.is::<gst_base::BaseSink>() {
            let stats = element.property::<gst::Structure>("stats");
            let rendered = stats.get::<u64>("rendered").unwrap_or(0);
            sinks.push(format!("\"{}\":{rendered}", element.name()));
        } else if factory == "shmringsrc" {
            let stats = element.property::<gst::Structure>("stats");
            let fields = stats
                .iter()
                .filter_map(|(name, value)| Some(format!("\"{name}\":{}", value.get::<u64>().ok()?)))
                .collect::<Vec<_>>();
            sources.push(format!("\"{}\":{{{}}}", element.name(), fields.join(",")));
        }
    }
    format!("{{\"sinks\":{{{}}},\"sources\":{{{}}}}}", sinks.join(","), sources.join(","))
}
