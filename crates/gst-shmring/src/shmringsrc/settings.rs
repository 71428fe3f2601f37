//! The element's properties, as stored between their setting and the
//! next start.

use gst::glib;

/// Which media the element takes from the ring (the `kind` property).
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstShmringSrcKind")]
pub enum Kind {
    #[enum_value(name = "Video frames (video/x-raw)", nick = "video")]
    Video = 0,
    #[enum_value(name = "Audio chunks (audio/x-raw)", nick = "audio")]
    Audio = 1,
}

impl Kind {
    /// The ring record kind of this media.
    pub fn record_kind(self) -> u32 {
        match self {
            Kind::Video => shmring_media::KIND_VIDEO,
            Kind::Audio => shmring_media::KIND_AUDIO,
        }
    }
}

/// Which stream of that kind (the `stream` property).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// The first stream of the kind that shows up.
    First,
    /// The stream with this id.
    Id(u32),
    /// The stream an announcement record names with this label.
    Label(String),
}

impl Selector {
    /// `""` is the first stream, a decimal number an id, anything else a
    /// label.
    pub fn parse(text: &str) -> Selector {
        let text = text.trim();
        if text.is_empty() {
            return Selector::First;
        }
        match text.parse::<u32>() {
            Ok(id) => Selector::Id(id),
            Err(_) => Selector::Label(text.to_string()),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Selector::First => "the first stream".to_string(),
            Selector::Id(id) => format!("stream {id}"),
            Selector::Label(label) => format!("stream {label:?}"),
        }
    }
}

pub const DEFAULT_MAX_HELD: u32 = 16;

#[derive(Clone, Debug)]
pub struct Settings {
    pub ring: Option<String>,
    pub fd_spec: Option<String>,
    pub stream: String,
    pub kind: Kind,
    pub max_held: u32,
    /// Nanoseconds without a frame of the stream before an error; 0 waits
    /// for ever.
    pub timeout: u64,
    pub eos_when_producers_leave: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            ring: None,
            fd_spec: None,
            stream: String::new(),
            kind: Kind::Video,
            max_held: DEFAULT_MAX_HELD,
            timeout: 0,
            eos_when_producers_leave: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_selectors() {
        assert_eq!(Selector::parse(""), Selector::First);
        assert_eq!(Selector::parse(" 7 "), Selector::Id(7));
        assert_eq!(Selector::parse("alice camera"), Selector::Label("alice camera".to_string()));
        assert_eq!(Selector::parse("-1"), Selector::Label("-1".to_string()));
    }
}
