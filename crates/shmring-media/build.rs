//! Generates the Rust types of `ffi/include/shmring/media.h` with bindgen
//! and compiles the layout probe (the header's sizes and offsets as seen by
//! a C11 and a C++20 compiler) that the layout tests compare against.

use std::env;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let include = manifest.join("../../ffi/include");
    let header = include.join("shmring/media.h");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed={}", header.display());
    println!("cargo:rerun-if-changed=probe/layout_probe.c");
    println!("cargo:rerun-if-changed=probe/layout_probe.cc");

    let bindings = bindgen::Builder::default()
        .header(header.to_string_lossy())
        .clang_arg("-std=c11")
        .allowlist_type("shmring_.*")
        .allowlist_var("SHMRING_.*")
        .prepend_enum_name(false)
        .use_core()
        .ctypes_prefix("core::ffi")
        .derive_default(true)
        .derive_eq(true)
        .derive_hash(false)
        .layout_tests(true)
        .generate_comments(true)
        .generate()
        .expect("bindgen could not parse ffi/include/shmring/media.h (is libclang installed?)");
    bindings.write_to_file(out.join("media_sys.rs")).expect("write bindings");

    cc::Build::new()
        .file("probe/layout_probe.c")
        .include(&include)
        .flag("-std=c11")
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .compile("shmring_media_layout_c");
    cc::Build::new()
        .cpp(true)
        .file("probe/layout_probe.cc")
        .include(&include)
        .include("probe")
        .flag("-std=c++20")
        .flag("-fno-exceptions")
        .flag("-fno-rtti")
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .cpp_link_stdlib(None)
        .compile("shmring_media_layout_cxx");
}
