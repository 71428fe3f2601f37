//! Compiles the C++ programs (`fake_renderer/main.cc` and the shim's test
//! harness `ffi/tests/shim_test.cc`) with Chromium's flags.

use std::path::Path;

fn main() {
    for (bin, source) in [("fake_renderer", "fake_renderer/main.cc"), ("shim_test", "../ffi/tests/shim_test.cc")] {
        println!("cargo:rerun-if-changed={source}");
        // No bridge of our own: `bridges([])` sets up the include paths of
        // `shmring-ffi` (its generated header and `ffi/include`).
        // Each archive holds one program's `extern "C"` entry point, which
        // only its own binary references, so the others link nothing of it.
        cxx_build::bridges(std::iter::empty::<&Path>())
            .file(source)
            .include("../ffi/tests")
            .std("c++20")
            .flag("-fno-exceptions")
            .flag("-fno-rtti")
            .define("RUST_CXX_NO_EXCEPTIONS", None)
            .warnings(true)
            .extra_warnings(true)
            .warnings_into_errors(true)
            .compile(&format!("{bin}_cc"));
    }
    println!("cargo:rerun-if-changed=../ffi/tests/pattern.h");
    println!("cargo:rerun-if-changed=../ffi/include/shmring/producer.h");
}
