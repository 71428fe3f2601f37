//! Runs `ffi/sanitizers.sh`: the C++ harness and the fake renderer under
//! AddressSanitizer + UndefinedBehaviorSanitizer (and the harness under
//! ThreadSanitizer), each verified by the consumer. Needs `clang++`.

use std::path::Path;
use std::process::Command;

#[test]
fn cxx_harness_is_clean_under_sanitizers() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ffi/sanitizers.sh");
    let output = Command::new("bash")
        .arg(&script)
        .env("CONSUMER", env!("CARGO_BIN_EXE_consumer"))
        .output()
        .expect("run ffi/sanitizers.sh");
    let log = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    println!("{log}");
    assert!(output.status.success(), "sanitizer run failed:\n{log}");
    assert!(log.contains("sanitizer asan+ubsan: ran"), "{log}");
    assert!(log.contains(" 0 failed"), "{log}");
}
