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

/// The target list of `scripts/compile-chromium-patch.sh`: (kind, what, files
/// it proves besides `what`, the rest of the line).
fn compile_targets() -> Vec<(String, String, Vec<String>)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/compile-chromium-patch.sh");
    let text = fs::read_to_string(&script).expect("scripts/compile-chromium-patch.sh exists");
    let start = text.find("compile_targets='\n").expect("the script defines compile_targets='...'")
        + "compile_targets='\n".len();
    let len = text[start..].find("\n'\n").expect("compile_targets ends with a lone '");
    text[start..start + len]
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut words = l.split_whitespace().map(str::to_owned);
            let kind = words.next().unwrap();
            let what = words.next().unwrap_or_else(|| panic!("target line without a target: {l:?}"));
            // A `none` line ends with a reason, not with files.
            let files = if kind == "none" { Vec::new() } else { words.collect() };
            (kind, what, files)
        })
        .collect()
}

/// Every file of the series, in patch order.
fn series_files() -> Vec<String> {
    patches().iter().flat_map(|p| check_patch(p)).collect()
}

/// The text of a file the series creates (its `+` lines); None when the
/// series does not create it.
fn new_file_in_series(path: &str) -> Option<String> {
    for p in patches() {
        let text = fs::read_to_string(&p).unwrap();
        let header = format!("diff --git a/{path} b/{path}\n");
        let Some(at) = text.find(&header) else { continue };
        let body = &text[at + header.len()..];
        let end = body.find("\ndiff --git ").map_or(body.len(), |e| e + 1);
        if !body[..end].lines().take_while(|l| !l.starts_with("@@ ")).any(|l| l.starts_with("new file mode ")) {
            return None;
        }
        return Some(
            body[..end]
                .lines()
                .skip_while(|l| !l.starts_with("@@ "))
                .filter_map(|l| l.strip_prefix('+'))
                .map(|l| format!("{l}\n"))
                .collect(),
        );
    }
    None
}

#[test]
fn compile_targets_cover_every_file_the_series_touches() {
    let targets = compile_targets();
    let series = series_files();
    let mut named: Vec<&str> = Vec::new();
    for (kind, what, files) in &targets {
        assert!(
            matches!(kind.as_str(), "object" | "rust" | "gn-check" | "none"),
            "unknown target kind {kind} ({what})"
        );
        if (kind == "object" || kind == "none") && !what.starts_with("gen/") {
            named.push(what);
        }
        named.extend(files.iter().map(String::as_str));
    }
    for file in &series {
        let times = named.iter().filter(|n| **n == file).count();
        assert_eq!(times, 1, "{file} is touched by the series and named {times} times in the script's compile targets");
        if file.ends_with(".cc") {
            assert!(
                targets.iter().any(|(k, w, _)| k == "object" && w == file),
                "{file}: every .cc of the series is compiled as an object target"
            );
        }
    }
    for name in &named {
        assert!(series.iter().any(|f| f == name), "compile targets name {name}, which the series does not touch");
    }
}

#[test]
fn compile_targets_build_every_gn_target_the_series_declares() {
    let targets = compile_targets();
    let has = |kind: &str, label: &str| targets.iter().any(|(k, w, _)| k == kind && w == label);
    for file in series_files().iter().filter(|f| f.ends_with("/BUILD.gn")) {
        let dir = file.trim_end_matches("/BUILD.gn");
        let Some(text) = new_file_in_series(file) else {
            continue; // an existing BUILD.gn the series only extends
        };
        // Target declarations: `template("name") {` at the start of a line.
        for line in text.lines().filter(|l| !l.starts_with([' ', '#']) && l.ends_with(") {")) {
            let Some((template, rest)) = line.split_once("(\"") else { continue };
            let name = rest.split('"').next().unwrap();
            let label = format!("//{dir}:{name}");
            match template.trim() {
                "rust_static_library" | "rust_bindgen_generator" => {
                    assert!(has("rust", &label), "{label}: no rust compile target");
                    if text.contains("cxx_bindings") && template.trim() == "rust_static_library" {
                        let block = &text[text.find(line).unwrap()..];
                        let block = &block[..block.find("\n}\n").unwrap_or(block.len())];
                        if block.contains("cxx_bindings") {
                            let generated = format!("{label}_cxx_generated");
                            assert!(has("rust", &generated), "{generated}: the cxx C++ of {label} is not compiled");
                        }
                    }
                }
                "source_set" | "blink_modules_sources" | "component" | "static_library" => {
                    assert!(has("gn-check", &label), "{label}: no gn-check target");
                }
                "config" => {}
                other => panic!("{file}: no compile target kind for GN template {other}"),
            }
        }
    }
}

/// The Rust sources GN compiles are the crate's: every listed file exists,
/// and every module left out is one the GN build does not compile.
#[test]
fn gn_rust_sources_match_the_crates() {
    let build =
        new_file_in_series("third_party/shmring/BUILD.gn").expect("the series creates third_party/shmring/BUILD.gn");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut listed = Vec::new();
    for line in build.lines() {
        let line = line.trim().trim_end_matches(',');
        if let Some(path) = line.strip_prefix("\"src/").and_then(|l| l.strip_suffix(".rs\"")) {
            let repo_path = path.strip_prefix("crates/").map_or_else(|| path.to_owned(), |p| format!("crates/{p}"));
            let repo_path = format!("{repo_path}.rs");
            assert!(root.join(&repo_path).is_file(), "BUILD.gn lists src/{path}.rs; {repo_path} does not exist");
            listed.push(repo_path);
        }
    }
    for dir in ["crates/shmring/src", "crates/shmring-media/src", "ffi/src"] {
        let lib = fs::read_to_string(root.join(dir).join("lib.rs")).unwrap();
        for entry in fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let file = format!("{dir}/{}", path.file_name().unwrap().to_string_lossy());
            if listed.contains(&file) {
                continue;
            }
            // Left out: only a module behind a cfg the GN build does not set
            // (tests, loom, an optional feature).
            let module = path.file_stem().unwrap().to_string_lossy();
            let decl = lib
                .lines()
                .position(|l| l.trim_start_matches("pub ").starts_with(&format!("mod {module};")))
                .unwrap_or_else(|| panic!("{file} is neither listed in BUILD.gn nor a module of {dir}/lib.rs"));
            let gate = if decl > 0 { lib.lines().nth(decl - 1).unwrap().trim() } else { "" };
            assert!(
                gate.starts_with("#[cfg(")
                    && (gate.contains("test") || gate.contains("loom") || gate.contains("feature")),
                "{file}: compiled by GN ({gate:?} does not exclude it) but not listed in third_party/shmring/BUILD.gn"
            );
        }
    }
}
