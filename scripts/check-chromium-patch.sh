#!/usr/bin/env bash
# Checks that chromium-patch/*.patch applies, in order, to the real Chromium
# source of Debian's chromium package.
#
# Opt-in (not run by CI): it downloads the source package's .orig tarball
# (about 800 MB) once and caches it.
#
#   scripts/check-chromium-patch.sh
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
  command -v apt-get >/dev/null || die "needs apt-get to find the source package"
  command -v curl >/dev/null || die "needs curl"
  apt="$work/apt"
  mkdir -p "$apt/sources.list.d" "$apt/lists/partial" "$apt/cache/archives/partial"
  : >"$apt/sources.list"
  # deb822 files: Types: deb -> deb-src. One-line files: deb -> deb-src.
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] || continue
    sed -E 's/^Types:.*$/Types: deb-src/' "$f" >"$apt/sources.list.d/$(basename "$f")"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f "$f" ]] || continue
    sed -nE 's/^[[:space:]]*deb[[:space:]]+/deb-src /p' "$f" >>"$apt/sources.list"
  done
  aptopts=(-o "Dir::Etc::sourcelist=$apt/sources.list"
           -o "Dir::Etc::sourceparts=$apt/sources.list.d"
           -o "Dir::State::Lists=$apt/lists"
           -o "Dir::Cache=$apt/cache"
           -o "Debug::NoLocking=1"
           -o "APT::Sandbox::User=$(id -un)")
  say "fetching source indexes (deb-src derived from the machine's apt sources)"
  apt-get "${aptopts[@]}" -qq update >/dev/null || die "apt-get update (deb-src) failed"
  debver="$(apt-cache "${aptopts[@]}" showsrc chromium 2>/dev/null |
    sed -nE 's/^Version: //p' | grep -E "^([0-9]+:)?${version//./\\.}-" | head -1 || true)"
  [[ -n "$debver" ]] || die "no chromium source package for $version in the configured archives"
  uri="$(apt-get "${aptopts[@]}" source --print-uris "chromium=$debver" 2>/dev/null |
    sed -nE "s/^'([^']*chromium_${version//./\\.}\.orig\.tar\.xz)'.*/\1/p" | head -1)"
  [[ -n "$uri" ]] || die "no .orig.tar.xz listed for chromium=$debver"
  sha="$(apt-get "${aptopts[@]}" source --print-uris "chromium=$debver" 2>/dev/null |
    sed -nE "s/^'[^']*chromium_${version//./\\.}\.orig\.tar\.xz' [^ ]+ [0-9]+ SHA256:([0-9a-f]+).*/\1/p" | head -1)"
  mkdir -p "$cache"
  say "downloading chromium_${version}.orig.tar.xz (cached in $cache)"
  if ! curl -fL --retry 3 -o "$tarball.part" "$uri"; then
    rm -f "$tarball.part"
    listed="$(apt-cache "${aptopts[@]}" showsrc chromium 2>/dev/null | sed -nE 's/^Version: //p' | tr '\n' ' ')"
    die "download failed: $uri (the index lists chromium $listed; set CHROMIUM_VERSION to one whose source the archive serves)"
  fi
  if [[ -n "$sha" ]]; then
    echo "$sha  $tarball.part" | sha256sum -c --quiet - || die "SHA256 mismatch"
  fi
  mv "$tarball.part" "$tarball"
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
