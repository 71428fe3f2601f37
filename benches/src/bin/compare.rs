//! The transport comparison (see `shmring_benches::compare`):
//!
//! ```text
//! cargo run --release -p shmring-benches --bin compare -- [--quick] [--json FILE] [--svg FILE]
//! ```

use std::process::ExitCode;

use shmring_benches::compare::{self, Relaunch};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    compare::main(&args, &Relaunch::default())
}
