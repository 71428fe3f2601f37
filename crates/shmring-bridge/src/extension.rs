//! The browser extension that records a meeting from a page that knows
//! nothing of shmring (`extension/`): its content scripts find every remote
//! WebRTC track and send each one, labelled, through the JS client. The
//! extension is plain files; [`write`] lays them out in a directory with the
//! JS client and a `config.json` naming the bridge, ready for Chromium's
//! `--load-extension=DIR`.
//!
//! ```
//! let dir = std::env::temp_dir().join(format!("shmring-extension-doc-{}", std::process::id()));
//! shmring_bridge::extension::write(&dir, "ws://127.0.0.1:8787/")?;
//! assert!(dir.join("manifest.json").is_file());
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fs;
use std::io;
use std::path::Path;

use crate::http::{CLIENT_JS, FILE_LANE_JS};

/// The extension's files, by name.
pub const FILES: &[(&str, &str)] = &[
    ("manifest.json", include_str!("../extension/manifest.json")),
    ("page-hooks.js", include_str!("../extension/page-hooks.js")),
    ("track-sender.js", include_str!("../extension/track-sender.js")),
    ("shmring-bridge.js", CLIENT_JS),
    ("shmring-file-lane.js", FILE_LANE_JS),
];

/// Writes the extension into `dir` (created if missing; files there of the
/// same names are replaced), its senders pointed at the bridge's WebSocket
/// `bridge_url` (`ws://127.0.0.1:8787/`).
pub fn write(dir: &Path, bridge_url: &str) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    for (name, text) in FILES {
        fs::write(dir.join(name), text)?;
    }
    let config = serde_json::json!({ "bridge": bridge_url });
    fs::write(dir.join("config.json"), format!("{config:#}\n"))
}
