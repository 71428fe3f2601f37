//! The Chromium patch series (`chromium-patch/`) is well-formed: every file
//! is a git-format patch whose hunks are internally consistent, it touches
//! only the parts of Chromium the series is meant to touch, and the README
//! names every patch.

use std::fs;
use std::path::{Path, PathBuf};

/// Path prefixes the series may touch (relative to the Chromium root).
const ALLOWED_PREFIXES: &[&str] = &[
    "content/browser/",
    "content/public/common/",
    "content/common/",
    "content/renderer/",
    "third_party/blink/renderer/",
    "third_party/blink/public/",
    "third_party/shmring/",
    "components/shmring/",
];

fn patch_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../chromium-patch")
}

fn patches() -> Vec<PathBuf> {
    let mut list: Vec<PathBuf> = fs::read_dir(patch_dir())
        .expect("chromium-patch/ exists")
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "patch"))
        .collect();
    list.sort();
    list
}

/// `@@ -a,b +c,d @@` -> (b, d); a missing count means 1.
fn hunk_counts(line: &str) -> Option<(usize, usize)> {
    let rest = line.strip_prefix("@@ -")?;
    let end = rest.find(" @@")?;
    let mut ranges = rest[..end].split(" +");
    let count = |r: &str| -> Option<usize> {
        match r.split_once(',') {
            Some((start, n)) => {
                start.parse::<usize>().ok()?;
                n.parse().ok()
            }
            None => r.parse::<usize>().ok().map(|_| 1),
        }
    };
    let old = count(ranges.next()?)?;
    let new = count(ranges.next()?)?;
    ranges.next().is_none().then_some((old, new))
}

/// Checks one patch; returns the paths it touches.
fn check_patch(path: &Path) -> Vec<String> {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let lines: Vec<&str> = text.lines().collect();

    assert!(lines.first().is_some_and(|l| l.starts_with("From ")), "{name}: no mbox From line");
    assert!(lines.iter().any(|l| l.starts_with("From: ")), "{name}: no From: header");
    assert!(lines.iter().any(|l| l.starts_with("Subject: [PATCH")), "{name}: no Subject: [PATCH header");
    assert!(lines.contains(&"---"), "{name}: no --- separator before the diffstat");

    let mut touched = Vec::new();
    let mut i = lines.iter().position(|l| l.starts_with("diff --git ")).unwrap_or_else(|| panic!("{name}: no diff"));
    while i < lines.len() {
        let line = lines[i];
        if line == "-- " {
            break; // signature
        }
        let Some(rest) = line.strip_prefix("diff --git ") else {
            panic!("{name}:{}: expected diff --git, got {line:?}", i + 1);
        };
        let (a, b) = rest.split_once(' ').unwrap_or_else(|| panic!("{name}: bad diff line {line:?}"));
        let a = a.strip_prefix("a/").unwrap_or_else(|| panic!("{name}: {a} lacks a/"));
        let b = b.strip_prefix("b/").unwrap_or_else(|| panic!("{name}: {b} lacks b/"));
        assert_eq!(a, b, "{name}: renames are not expected");
        touched.push(b.to_owned());
        i += 1;

        // Extended headers up to the ---/+++ pair.
        let mut is_new = false;
        while i < lines.len() && !lines[i].starts_with("--- ") {
            let h = lines[i];
            assert!(
                h.starts_with("index ")
                    || h.starts_with("new file mode ")
                    || h.starts_with("old mode ")
                    || h.starts_with("new mode "),
                "{name}:{}: unexpected header {h:?}",
                i + 1
            );
            is_new |= h.starts_with("new file mode ");
            i += 1;
        }
        let minus = lines.get(i).unwrap_or_else(|| panic!("{name}: {b}: no --- line"));
        let plus = lines.get(i + 1).unwrap_or_else(|| panic!("{name}: {b}: no +++ line"));
        let want_minus = if is_new { "--- /dev/null".to_owned() } else { format!("--- a/{a}") };
        assert_eq!(*minus, want_minus, "{name}: {b}");
        assert_eq!(*plus, format!("+++ b/{b}"), "{name}: {b}");
        i += 2;

        // Hunks: count the lines each side and compare with the header.
        let mut hunks = 0;
        while i < lines.len() && lines[i].starts_with("@@ ") {
            let (old, new) =
                hunk_counts(lines[i]).unwrap_or_else(|| panic!("{name}:{}: bad hunk header {:?}", i + 1, lines[i]));
            if is_new {
                assert_eq!(old, 0, "{name}: {b}: a new file's hunk has old lines");
            }
            i += 1;
            let (mut seen_old, mut seen_new) = (0, 0);
            while seen_old < old || seen_new < new {
                let l = lines.get(i).unwrap_or_else(|| panic!("{name}: {b}: hunk ends early"));
                match l.as_bytes().first() {
                    Some(b' ') => {
                        seen_old += 1;
                        seen_new += 1;
                    }
                    Some(b'-') => seen_old += 1,
                    Some(b'+') => seen_new += 1,
                    Some(b'\\') => {}
                    _ => panic!("{name}:{}: {b}: bad hunk line {l:?}", i + 1),
                }
                i += 1;
            }
            assert_eq!((seen_old, seen_new), (old, new), "{name}: {b}: hunk line counts");
            if lines.get(i).is_some_and(|l| l.starts_with('\\')) {
                i += 1; // "\ No newline at end of file"
            }
            hunks += 1;
        }
        assert!(hunks > 0, "{name}: {b}: no hunks");
    }
    assert!(!touched.is_empty(), "{name}: touches nothing");
    touched
}

#[test]
fn series_is_numbered_and_contiguous() {
    let list = patches();
    assert!(!list.is_empty(), "chromium-patch/ has no patches");
    for (n, p) in list.iter().enumerate() {
        let name = p.file_name().unwrap().to_string_lossy();
        let prefix = format!("{:04}-", n + 1);
        assert!(name.starts_with(&prefix), "{name} should start with {prefix}");
    }
}

#[test]
fn every_patch_parses_and_touches_only_expected_paths() {
    for p in patches() {
        for file in check_patch(&p) {
            assert!(
                ALLOWED_PREFIXES.iter().any(|prefix| file.starts_with(prefix)),
                "{}: touches {file}, outside {ALLOWED_PREFIXES:?}",
                p.display()
            );
            assert!(!file.contains(".."), "{file}: path escapes the tree");
        }
    }
}

#[test]
fn readme_lists_every_patch() {
    let readme = fs::read_to_string(patch_dir().join("README.md")).expect("chromium-patch/README.md exists");
    for p in patches() {
        let name = p.file_name().unwrap().to_string_lossy();
        assert!(readme.contains(&*name), "README.md does not mention {name}");
    }
}

#[test]
fn hunk_header_parser() {
    assert_eq!(hunk_counts("@@ -1,7 +1,8 @@ fn x()"), Some((7, 8)));
    assert_eq!(hunk_counts("@@ -0,0 +1 @@"), Some((0, 1)));
    assert_eq!(hunk_counts("@@ -3 +3,2 @@"), Some((1, 2)));
    assert_eq!(hunk_counts("@@ -x,1 +1,1 @@"), None);
    assert_eq!(hunk_counts("@ -1,1 +1,1 @@"), None);
}
