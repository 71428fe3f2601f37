//! A GStreamer plugin for shmring rings: `shmringsrc`, a live source that
//! puts one video or audio stream of a ring into any pipeline, each buffer
//! wrapping its frame where it lies in shared memory (see [`shmringsrc`]).
//!
//! Build it with `cargo build --release -p gst-shmring` and point
//! GStreamer at the library:
//!
//! ```text
//! GST_PLUGIN_PATH=target/release gst-inspect-1.0 shmringsrc
//! ```
//!
//! An application that links this crate can register the element without
//! the plugin file:
//!
//! ```
//! use gst::prelude::*;
//!
//! gst::init()?;
//! gstshmring::plugin_register_static()?;
//! let source = gst::ElementFactory::make("shmringsrc").property("ring", "bot-17").build()?;
//! assert_eq!(source.property::<String>("ring"), "bot-17");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod shmringsrc;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), gst::glib::BoolError> {
    shmringsrc::register(plugin)
}

gst::plugin_define!(
    shmring,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    env!("CARGO_PKG_VERSION"),
    "MIT/X11",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY")
);
