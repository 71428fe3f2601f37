//! The element's properties: their specs, and their values read from and
//! written into the stored [`Settings`].

use std::sync::LazyLock;

use gst::glib;
use gst::prelude::*;

use super::settings::{Kind, Settings, DEFAULT_MAX_HELD};

/// Every property, `stats` (read-only, answered by the element) included.
pub fn specs() -> &'static [glib::ParamSpec] {
    static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
        vec![
            glib::ParamSpecString::builder("ring")
                .nick("Ring")
                .blurb("Name of the ring to consume (served by `shmring create` or a ring owner)")
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("fd-spec")
                .nick("Descriptor spec")
                .blurb(
                    "Descriptors of an inherited ring instead of a name, written as in SHMRING_FD (the \
                     memfd's number); the element takes ownership of them",
                )
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("stream")
                .nick("Stream")
                .blurb("Stream id (a number) or label (from the ring's announcements); empty: the first stream")
                .default_value(Some(""))
                .mutable_ready()
                .build(),
            glib::ParamSpecEnum::builder_with_default("kind", Kind::Video)
                .nick("Kind")
                .blurb("Which records to take: video frames or audio chunks")
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("max-held")
                .nick("Max held")
                .blurb(
                    "Frames downstream may hold in the ring at once; further frames are copied into a pool \
                     (0: copy every frame)",
                )
                .minimum(0)
                .maximum(4096)
                .default_value(DEFAULT_MAX_HELD)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt64::builder("timeout")
                .nick("Timeout")
                .blurb("Post an error when no frame of the stream arrives for this long, in ns (0: wait for ever)")
                .default_value(0)
                .mutable_ready()
                .build(),
            glib::ParamSpecBoolean::builder("eos-when-producers-leave")
                .nick("EOS when producers leave")
                .blurb("End the stream once every producer has left the ring and it is drained")
                .default_value(false)
                .mutable_ready()
                .build(),
            glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                .nick("Statistics")
                .blurb("Buffers pushed in place and copied, frames missing, records stepped over")
                .read_only()
                .build(),
        ]
    });
    PROPERTIES.as_ref()
}

/// Stores `value` of the writable property `pspec`.
pub fn set(settings: &mut Settings, value: &glib::Value, pspec: &glib::ParamSpec) {
    match pspec.name() {
        "ring" => {
            settings.ring = value.get::<Option<String>>().expect("type checked upstream").filter(|s| !s.is_empty())
        }
        "fd-spec" => {
            settings.fd_spec = value.get::<Option<String>>().expect("type checked upstream").filter(|s| !s.is_empty())
        }
        "stream" => settings.stream = value.get::<Option<String>>().expect("type checked upstream").unwrap_or_default(),
        "kind" => settings.kind = value.get().expect("type checked upstream"),
        "max-held" => settings.max_held = value.get().expect("type checked upstream"),
        "timeout" => settings.timeout = value.get().expect("type checked upstream"),
        "eos-when-producers-leave" => settings.eos_when_producers_leave = value.get().expect("type checked upstream"),
        other => unreachable!("no writable property {other}"),
    }
}

/// The value of property `pspec` in `settings`; `None` for `stats`, which
/// the element answers from its counters.
pub fn get(settings: &Settings, pspec: &glib::ParamSpec) -> Option<glib::Value> {
    Some(match pspec.name() {
        "ring" => settings.ring.to_value(),
        "fd-spec" => settings.fd_spec.to_value(),
        "stream" => settings.stream.to_value(),
        "kind" => settings.kind.to_value(),
        "max-held" => settings.max_held.to_value(),
        "timeout" => settings.timeout.to_value(),
        "eos-when-producers-leave" => settings.eos_when_producers_leave.to_value(),
        "stats" => return None,
        other => unreachable!("no property {other}"),
    })
}
