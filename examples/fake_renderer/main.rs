//! Entry point of `fake_renderer`: the program is C++ (`main.cc`, built
//! with Chromium's flags by this package's build script); this only hands
//! it `argv`.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::ffi::{c_char, c_int, CString};

// Links the shim's bridge (the C++ program calls into it).
use shmring_ffi as _;

extern "C" {
    fn shmring_fake_renderer_main(argc: c_int, argv: *mut *mut c_char) -> c_int;
}

fn main() {
    let args: Vec<CString> =
        std::env::args_os().map(|a| CString::new(a.into_encoded_bytes()).expect("no NUL in arguments")).collect();
    let mut argv: Vec<*mut c_char> = args.iter().map(|a| a.as_ptr().cast_mut()).collect();
    argv.push(std::ptr::null_mut());
    // SAFETY: `argv` holds `args.len()` valid NUL-terminated strings and a
    // null terminator, all alive across the call; the C++ side only reads.
    let code = unsafe { shmring_fake_renderer_main(args.len() as c_int, argv.as_mut_ptr()) };
    std::process::exit(code);
}
