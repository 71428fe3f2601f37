//! `shmring bridge`: the WebSocket bridge of `shmring-bridge`, run as a
//! producer of a named ring until SIGINT or SIGTERM.

use std::io::Write;

use shmring_bridge::{serve_until_signal, BridgeConfig, BridgeError, RingSource};

use crate::cli::BridgeArgs;
use crate::failure::{Failure, Outcome};

pub fn serve(args: BridgeArgs) -> Outcome {
    let name = &args.name;
    shmring::validate_name(name).map_err(|e| Failure::ring(name, e))?;
    let mut config = BridgeConfig::listening_on(args.listen);
    if let Some(workers) = args.workers {
        config.workers = workers;
    }
    config.max_connections = args.max_connections;
    config.message_timeout = args.message_timeout;
    config.idle_timeout = args.idle_timeout;
    config.allowed_origins = (!args.allow_origins.is_empty()).then(|| args.allow_origins.clone());
    config.serve_pages = !args.no_pages;
    config.profile_dirs = args.profile_dirs.clone();
    let _span = tracing::info_span!("bridge", ring = %name).entered();
    let stats = serve_until_signal(config, RingSource::Name(name.clone()), |bridge| {
        let addr = bridge.local_addr();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {addr}");
        let _ = out.flush();
        eprintln!(
            "bridge into ring {name}: WebSocket ws://{addr}/, capture page http://{addr}/, \
             JS client http://{addr}/shmring-bridge.js, counters http://{addr}/stats (Ctrl-C to stop)"
        );
    })
    .map_err(|e| match e {
        BridgeError::Ring(error) => Failure::ring(name, error),
        other => Failure::failed(other),
    })?;
    let summary = serde_json::to_string(&stats).unwrap_or_default();
    println!("stopped: {summary}");
    Ok(())
}
