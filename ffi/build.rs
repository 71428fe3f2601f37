//! Generates the C++ side of the bridge with `cxx_build` and compiles it
//! with Chromium's flags; exports `ffi/include` (the C header and the
//! idiomatic C++ wrapper) to crates that depend on this one.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let include = manifest.join("include");
    cxx_build::CFG.exported_header_dirs.push(&include);
    cxx_build::bridge("src/lib.rs")
        .std("c++20")
        .flag("-fno-exceptions")
        .flag("-fno-rtti")
        .define("RUST_CXX_NO_EXCEPTIONS", None)
        .warnings(true)
        .extra_warnings(true)
        .compile("shmring-ffi-bridge");
    println!("cargo:rerun-if-changed=src/lib.rs");
    println!("cargo:rerun-if-changed=include/shmring/media.h");
    println!("cargo:rerun-if-changed=include/shmring/producer.h");
}
