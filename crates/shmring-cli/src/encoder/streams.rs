//! The streams of a ring as the encoder learns them: each stream's label
//! (from its announce record) and counters, and which participant it
//! belongs to. A stream is a stream id and a kind: producers number their
//! video and audio streams independently (a camera and a microphone may
//! both be stream 1).
//!
//! A participant is what one file records: a video stream and the audio
//! stream paired with it. Streams pair by the participant their labels
//! name: a label that is JSON with a string `participant` field (what the
//! meeting extension writes) names that participant; any other label is
//! its own participant name; a stream never announced belongs to the
//! unnamed participant. A stream joins the first participant of its name
//! that has no stream of its kind yet, else starts a new participant, so
//! an unannounced camera and microphone (the demo) make one participant.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::stream_table::{StreamKind, StreamRow};

/// One stream id.
#[derive(Debug)]
pub struct Stream {
    pub kind: StreamKind,
    pub label: Option<String>,
    pub records: u64,
    pub bytes: u64,
    /// Frame numbers missing (lost before the encoder).
    pub missing: u64,
    last_number: Option<u64>,
    /// What its latest record carried (`1280x720 I420`).
    pub format: String,
    pub last_at: Instant,
    /// Index into [`Streams::participants`].
    pub participant: usize,
}

/// A participant: at most one video and one audio stream.
#[derive(Debug)]
pub struct Participant {
    /// The name its streams' labels give (`None`: unannounced streams).
    pub name: Option<String>,
    pub video: Option<u32>,
    pub audio: Option<u32>,
}

/// Every stream seen, and the participants they make.
#[derive(Debug, Default)]
pub struct Streams {
    streams: BTreeMap<(u32, StreamKind), Stream>,
    /// Labels announced for streams that have sent nothing yet.
    labels: BTreeMap<(u32, StreamKind), String>,
    pub participants: Vec<Participant>,
    /// Pair every stream into one participant, whatever the labels say
    /// (the streams were chosen by id).
    ignore_labels: bool,
}

/// The participant a label names.
pub fn participant_name(label: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(label) {
        Ok(value) => match value.get("participant").and_then(|p| p.as_str()) {
            Some(participant) => participant.to_string(),
            None => label.to_string(),
        },
        Err(_) => label.to_string(),
    }
}

/// Most labels kept for streams not seen yet (a producer announcing
/// without end cannot grow this without bound).
const MAX_PENDING_LABELS: usize = 4096;

impl Streams {
    pub fn new(ignore_labels: bool) -> Streams {
        Streams { ignore_labels, ..Streams::default() }
    }

    /// Takes the announced label of stream `id` of `kind`.
    pub fn announce(&mut self, id: u32, kind: StreamKind, label: String) {
        let key = (id, kind);
        match self.streams.get_mut(&key) {
            // Already paired: the new label is shown, the pairing stays.
            Some(stream) => stream.label = Some(label),
            None if self.labels.len() < MAX_PENDING_LABELS || self.labels.contains_key(&key) => {
                self.labels.insert(key, label);
            }
            None => {}
        }
    }

    /// Counts a record of stream `id` (frame `number`, `bytes` long,
    /// carrying `format`) and gives the stream, paired on its first record.
    pub fn record(&mut self, id: u32, kind: StreamKind, number: u64, bytes: usize, format: String) -> &Stream {
        let key = (id, kind);
        if !self.streams.contains_key(&key) {
            let label = self.labels.remove(&key);
            let participant = self.pair(id, kind, label.as_deref());
            let stream = Stream {
                kind,
                label,
                records: 0,
                bytes: 0,
                missing: 0,
                last_number: None,
                format: String::new(),
                last_at: Instant::now(),
                participant,
            };
            self.streams.insert(key, stream);
        }
        let stream = self.streams.get_mut(&key).expect("inserted above");
        stream.records += 1;
        stream.bytes += bytes as u64;
        if let Some(last) = stream.last_number {
            stream.missing = stream.missing.saturating_add(number.saturating_sub(last.saturating_add(1)));
        }
        stream.last_number = Some(number);
        if stream.format != format {
            stream.format = format;
        }
        stream.last_at = Instant::now();
        stream
    }

    fn pair(&mut self, id: u32, kind: StreamKind, label: Option<&str>) -> usize {
        let name = if self.ignore_labels { None } else { label.map(participant_name) };
        let free = |p: &Participant| match kind {
            StreamKind::Video => p.video.is_none(),
            StreamKind::Audio => p.audio.is_none(),
        };
        let index = match self.participants.iter().position(|p| p.name == name && free(p)) {
            Some(index) => index,
            None => {
                self.participants.push(Participant { name, video: None, audio: None });
                self.participants.len() - 1
            }
        };
        let participant = &mut self.participants[index];
        match kind {
            StreamKind::Video => participant.video = Some(id),
            StreamKind::Audio => participant.audio = Some(id),
        }
        index
    }

    #[cfg(test)]
    pub fn get(&self, id: u32, kind: StreamKind) -> Option<&Stream> {
        self.streams.get(&(id, kind))
    }

    /// Every stream, by id (video before audio for one id).
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Stream)> {
        self.streams.iter().map(|((id, _), s)| (*id, s))
    }

    /// A stream's row of the published table (without what recorders add).
    pub fn row(&self, id: u32, kind: StreamKind) -> Option<StreamRow> {
        let s = self.streams.get(&(id, kind))?;
        Some(StreamRow {
            id,
            kind: s.kind,
            label: s.label.clone(),
            records: s.records,
            bytes: s.bytes,
            missing: s.missing,
            used: 0,
            dropped: 0,
            format: s.format.clone(),
            output: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(participant: &str, kind: &str) -> String {
        serde_json::json!({ "participant": participant, "kind": kind, "track": format!("{participant}-{kind}") })
            .to_string()
    }

    #[test]
    fn streams_pair_by_the_participant_their_labels_name() {
        let mut streams = Streams::new(false);
        streams.announce(1, StreamKind::Video, label("alice", "video"));
        streams.announce(2, StreamKind::Audio, label("bob", "audio"));
        streams.announce(3, StreamKind::Audio, label("alice", "audio"));
        streams.announce(4, StreamKind::Video, label("bob", "video"));
        // Audio of bob comes first; alice's video, then her audio.
        assert_eq!(streams.record(2, StreamKind::Audio, 0, 100, String::new()).participant, 0);
        assert_eq!(streams.record(1, StreamKind::Video, 0, 100, String::new()).participant, 1);
        assert_eq!(streams.record(3, StreamKind::Audio, 0, 100, String::new()).participant, 1);
        assert_eq!(streams.record(4, StreamKind::Video, 0, 100, String::new()).participant, 0);
        assert_eq!(streams.participants.len(), 2);
        assert_eq!(streams.participants[0].name.as_deref(), Some("bob"));
        assert_eq!((streams.participants[1].video, streams.participants[1].audio), (Some(1), Some(3)));
    }

    #[test]
    fn unannounced_streams_pair_first_come_and_a_second_camera_is_its_own() {
        let mut streams = Streams::new(false);
        assert_eq!(streams.record(1, StreamKind::Video, 0, 1, String::new()).participant, 0);
        assert_eq!(streams.record(2, StreamKind::Audio, 0, 1, String::new()).participant, 0);
        assert_eq!(streams.record(5, StreamKind::Video, 0, 1, String::new()).participant, 1);
        // Plain labels name their own participant.
        streams.announce(6, StreamKind::Video, "camera".into());
        assert_eq!(streams.record(6, StreamKind::Video, 0, 1, String::new()).participant, 2);
    }

    #[test]
    fn chosen_streams_pair_whatever_their_labels() {
        let mut streams = Streams::new(true);
        streams.announce(1, StreamKind::Video, "camera".into());
        streams.announce(2, StreamKind::Audio, "microphone".into());
        assert_eq!(streams.record(1, StreamKind::Video, 0, 1, String::new()).participant, 0);
        assert_eq!(streams.record(2, StreamKind::Audio, 0, 1, String::new()).participant, 0);
        assert_eq!(streams.get(2, StreamKind::Audio).unwrap().label.as_deref(), Some("microphone"));
    }

    #[test]
    fn missing_frame_numbers_are_counted_and_hostile_numbers_do_not_overflow() {
        let mut streams = Streams::new(false);
        for number in [0, 1, 4, 2, u64::MAX, 0] {
            streams.record(1, StreamKind::Video, number, 10, "2x2 I420".into());
        }
        let stream = streams.get(1, StreamKind::Video).unwrap();
        assert_eq!((stream.records, stream.bytes), (6, 60));
        assert_eq!(stream.missing, 2 + (u64::MAX - 3));
        streams.record(1, StreamKind::Video, u64::MAX, 10, "2x2 I420".into());
        assert_eq!(streams.get(1, StreamKind::Video).unwrap().missing, u64::MAX, "saturates");
    }

    #[test]
    fn a_camera_and_a_microphone_may_share_a_stream_id() {
        let mut streams = Streams::new(false);
        for n in 0..3 {
            streams.record(1, StreamKind::Video, n, 10, String::new());
            streams.record(1, StreamKind::Audio, n * 2, 10, String::new());
        }
        assert_eq!(streams.get(1, StreamKind::Video).unwrap().missing, 0);
        assert_eq!(streams.get(1, StreamKind::Audio).unwrap().missing, 2);
        assert_eq!(streams.participants.len(), 1, "paired");
    }
}
