//! Where a recording's files go. `-o` names either a file, for the first
//! participant (later ones get `STEM.participant-N.EXT`, the mix
//! `STEM.mix.m4a`), or a directory (an existing one, or a path ending in
//! `/`), which gets `participant-N.mp4` and `mix.m4a`. A participant's
//! later files (a new camera size, a return after leaving) are numbered
//! before the extension: `participant-2.1.mp4`, ...
//!
//! File names come from the order participants appeared in, never from
//! labels: a producer's text never reaches the file system.

use std::path::{Path, PathBuf};

/// The naming scheme of one recording.
#[derive(Clone, Debug)]
pub enum Outputs {
    Directory(PathBuf),
    File(PathBuf),
}

impl Outputs {
    pub fn new(path: &Path) -> Outputs {
        let text = path.as_os_str().to_string_lossy();
        if path.is_dir() || text.ends_with('/') {
            Outputs::Directory(path.to_path_buf())
        } else {
            Outputs::File(path.to_path_buf())
        }
    }

    /// Creates the directory (and any parent) the files go into.
    pub fn prepare(&self) -> std::io::Result<()> {
        match self {
            Outputs::Directory(dir) => std::fs::create_dir_all(dir),
            Outputs::File(_) => Ok(()),
        }
    }

    /// The first file of participant `index` (from 0, in order of arrival).
    pub fn participant(&self, index: usize) -> PathBuf {
        match self {
            Outputs::Directory(dir) => dir.join(format!("participant-{}.mp4", index + 1)),
            Outputs::File(file) if index == 0 => file.clone(),
            Outputs::File(file) => with_suffix(file, &format!("participant-{}", index + 1), "mp4"),
        }
    }

    /// The file of every participant's audio mixed.
    pub fn mix(&self) -> PathBuf {
        match self {
            Outputs::Directory(dir) => dir.join("mix.m4a"),
            Outputs::File(file) => file.with_file_name(format!("{}.mix.m4a", stem(file))),
        }
    }
}

fn stem(file: &Path) -> String {
    file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "recording".into())
}

/// `dir/STEM.SUFFIX.EXT`, the extension `default_ext` when `file` has none.
fn with_suffix(file: &Path, suffix: &str, default_ext: &str) -> PathBuf {
    let ext = file.extension().map_or(default_ext.to_string(), |e| e.to_string_lossy().into_owned());
    file.with_file_name(format!("{}.{suffix}.{ext}", stem(file)))
}

/// `out.mp4` for the first file, `out.1.mp4`, `out.2.mp4`, ... after it.
pub fn segment_path(base: &Path, index: usize) -> PathBuf {
    if index == 0 {
        return base.to_path_buf();
    }
    let name = match base.extension() {
        Some(ext) => format!("{}.{index}.{}", stem(base), ext.to_string_lossy()),
        None => format!("{}.{index}", stem(base)),
    };
    base.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_segments_are_numbered_before_the_extension() {
        assert_eq!(segment_path(Path::new("out/rec.mp4"), 0), Path::new("out/rec.mp4"));
        assert_eq!(segment_path(Path::new("out/rec.mp4"), 2), Path::new("out/rec.2.mp4"));
        assert_eq!(segment_path(Path::new("rec"), 1), Path::new("rec.1"));
    }

    #[test]
    fn a_file_names_the_first_participant_and_a_directory_holds_them_all() {
        let file = Outputs::new(Path::new("out/meeting.mp4"));
        assert_eq!(file.participant(0), Path::new("out/meeting.mp4"));
        assert_eq!(file.participant(2), Path::new("out/meeting.participant-3.mp4"));
        assert_eq!(file.mix(), Path::new("out/meeting.mix.m4a"));
        let dir = Outputs::new(Path::new("out/meeting-42/"));
        assert_eq!(dir.participant(0), Path::new("out/meeting-42/participant-1.mp4"));
        assert_eq!(dir.mix(), Path::new("out/meeting-42/mix.m4a"));
        assert_eq!(segment_path(&dir.participant(1), 1), Path::new("out/meeting-42/participant-2.1.mp4"));
    }
}
