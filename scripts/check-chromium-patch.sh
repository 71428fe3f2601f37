#!/usr/bin/env bash
# Checks that chromium-patch/*.patch applies, in order, to the real Chromium
# source of Debian's chromium package.
#
# Opt-in (not run by CI): it downloads the source package's .orig tarball
# (about 800 MB) once and caches it.
#
#   scripts/check-chromium-patch.sh
#   scripts/check-chromium-patch.sh --compile --cache DIR
#
# With --compile it compiles, with Chromium's own build, every translation
# unit and Rust target the series adds or changes: see
# scripts/compile-chromium-patch.sh (about an hour on 2 cores and 12 GB in DIR the
# first time).
#
# Environment:
#   CHROMIUM_VERSION       upstream version to check against (default: the
#                          installed chromium package's version)
#   CHROMIUM_ORIG_TARBALL  use this chromium_<version>.orig.tar.xz instead of
#                          downloading one
#   SHMRING_CACHE          cache directory (default ~/.cache/shmring)
#   KEEP_TREE=1            keep the scratch tree and print its location
#
# The deb-src lines are derived from this machine's apt sources into a
# temporary directory; nothing in /etc is changed. Exits non-zero when any
# patch fails to apply or the source cannot be obtained.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ "${1:-}" == --compile ]]; then
  shift
  exec "$repo/scripts/compile-chromium-patch.sh" "$@"
fi
# shellcheck source=debian-source.sh
. "$repo/scripts/debian-source.sh"
patch_dir="$repo/chromium-patch"
cache="${SHMRING_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shmring}/chromium"

die() { echo "check-chromium-patch: $*" >&2; exit 2; }
say() { echo "check-chromium-patch: $*"; }

for tool in git tar xz; do
  command -v "$tool" >/dev/null || die "needs $tool"
done

shopt -s nullglob
patches=("$patch_dir"/[0-9][0-9][0-9][0-9]-*.patch)
shopt -u nullglob
((${#patches[@]})) || die "no patches in $patch_dir"

work="$(mktemp -d)"
cleanup() {
  if [[ "${KEEP_TREE:-}" == 1 ]]; then
    say "scratch tree kept in $work/tree"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

# --- Which version ---------------------------------------------------------
version="${CHROMIUM_VERSION:-}"
if [[ -z "$version" ]]; then
  installed="$(dpkg-query -W -f='${Version}' chromium 2>/dev/null || true)"
  [[ -n "$installed" ]] || die "chromium is not installed; set CHROMIUM_VERSION"
  version="${installed#*:}"  # epoch
  version="${version%%-*}"   # Debian revision
fi
[[ "$version" =~ ^[0-9]+(\.[0-9]+){3}$ ]] || die "not a Chromium version: $version"
say "Chromium $version"

# --- The .orig tarball -----------------------------------------------------
tarball="${CHROMIUM_ORIG_TARBALL:-}"
if [[ -n "$tarball" ]]; then
  [[ -f "$tarball" ]] || die "CHROMIUM_ORIG_TARBALL=$tarball does not exist"
else
  tarball="$cache/chromium_${version}.orig.tar.xz"
fi

if [[ ! -f "$tarball" ]]; then
  debian_source_setup "$work/apt"
  debian_source_fetch "$(debian_source_package "$version")" .orig.tar.xz "$tarball"
fi
say "source: $(basename "$tarball")"

# --- Extract only what the series touches ----------------------------------
# Files the patches modify (new files need nothing from the tarball); each
# is matched below the tarball's single top-level directory.
mapfile -t touched < <(
  for p in "${patches[@]}"; do
    awk '
      /^diff --git / { path = substr($3, 3); isnew = 0; next }
      /^new file mode/ { isnew = 1; next }
      /^--- a\// { if (!isnew) print path }
    ' "$p"
  done | sort -u
)
patterns="$work/patterns"
: >"$patterns"
for f in "${touched[@]}"; do
  printf 'chromium-*/%s\n' "$f" >>"$patterns"
done
tree="$work/tree"
mkdir -p "$tree"
if ((${#touched[@]})); then
  say "extracting ${#touched[@]} files (streams the whole tarball once)"
  xz -dc "$tarball" |
    tar -x -C "$tree" --wildcards --no-wildcards-match-slash -T "$patterns" ||
    die "extraction failed (a touched file may be missing from this version)"
  top=("$tree"/*)
  [[ ${#top[@]} -eq 1 && -d "${top[0]}" ]] || die "unexpected tarball layout"
  tree="${top[0]}"
fi
missing=0
for f in "${touched[@]}"; do
  if [[ ! -f "$tree/$f" ]]; then
    echo "  missing in $version: $f"
    missing=1
  fi
done

# --- Apply ------------------------------------------------------------------
git -C "$tree" init -q
git -C "$tree" add -A
git -C "$tree" -c user.name=check -c user.email=check@localhost commit -q --allow-empty -m "chromium $version (touched files)"

failed=0
for p in "${patches[@]}"; do
  name="$(basename "$p")"
  if out="$(git -C "$tree" apply --check -v "$p" 2>&1)"; then
    git -C "$tree" apply --whitespace=nowarn "$p"
    hunks="$(grep -c '^@@ ' "$p" || true)"
    files="$(grep -c '^diff --git ' "$p" || true)"
    printf 'ok    %s (%s files, %s hunks)\n' "$name" "$files" "$hunks"
  else
    printf 'FAIL  %s\n' "$name"
    grep -E '^(error|Checking|Hunk)' <<<"$out" | sed 's/^/      /' || true
    failed=1
    break  # later patches build on this one
  fi
done

if ((failed || missing)); then
  say "FAILED against Chromium $version"
  exit 1
fi
say "all ${#patches[@]} patches apply to Chromium $version"
