# Sourced by the Chromium patch checks: finds Debian's chromium source
# package for an upstream version and downloads its files, verified against
# the SHA256 the archive index lists.
#
# The deb-src entries are derived from this machine's apt sources into a
# directory the caller owns; nothing in /etc is changed.
#
#   debian_source_setup DIR        apt state for deb-src under DIR
#   debian_source_package VERSION  prints the Debian version (150.0.7871.100-1~deb12u1)
#   debian_source_fetch DEBVER SUFFIX DEST
#                                  downloads chromium_*SUFFIX (e.g. .orig.tar.xz) to DEST
#
# The caller defines die().

debian_source_setup() {
  local apt="$1"
  command -v apt-get >/dev/null || die "needs apt-get to find the source package"
  command -v curl >/dev/null || die "needs curl"
  mkdir -p "$apt/sources.list.d" "$apt/lists/partial" "$apt/cache/archives/partial"
  : >"$apt/sources.list"
  # deb822 files: Types: deb -> deb-src. One-line files: deb -> deb-src.
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] || continue
    sed -E 's/^Types:.*$/Types: deb-src/' "$f" >"$apt/sources.list.d/$(basename "$f")"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f "$f" ]] || continue
    sed -nE 's/^[[:space:]]*deb[[:space:]]+/deb-src /p' "$f" >>"$apt/sources.list"
  done
  debian_source_aptopts=(
    -o "Dir::Etc::sourcelist=$apt/sources.list"
    -o "Dir::Etc::sourceparts=$apt/sources.list.d"
    -o "Dir::State::Lists=$apt/lists"
    -o "Dir::Cache=$apt/cache"
    -o "Debug::NoLocking=1"
    -o "APT::Sandbox::User=$(id -un)"
  )
  echo "check-chromium-patch: fetching source indexes (deb-src derived from the machine's apt sources)"
  # Some configured repositories may have no sources; the Debian archive does.
  apt-get "${debian_source_aptopts[@]}" -qq update >/dev/null 2>&1 || true
}

debian_source_package() {
  local version="$1" debver
  debver="$(apt-cache "${debian_source_aptopts[@]}" showsrc chromium 2>/dev/null |
    sed -nE 's/^Version: //p' | grep -E "^([0-9]+:)?${version//./\\.}-" | head -1 || true)"
  [[ -n "$debver" ]] || die "no chromium source package for $version in the configured archives (listed: $(
    apt-cache "${debian_source_aptopts[@]}" showsrc chromium 2>/dev/null | sed -nE 's/^Version: //p' | tr '\n' ' '))"
  echo "$debver"
}

debian_source_fetch() {
  local debver="$1" suffix="$2" dest="$3" uris line uri sha
  uris="$(apt-get "${debian_source_aptopts[@]}" source --print-uris "chromium=$debver" 2>/dev/null)"
  # Lines: 'URI' NAME SIZE SHA256:HEX
  line="$(grep -F "${suffix}' " <<<"$uris" | grep -E "^'[^']*/chromium_[^' ]*" | head -1 || true)"
  [[ -n "$line" ]] || die "no chromium_*$suffix listed for chromium=$debver"
  uri="$(sed -nE "s/^'([^']*)'.*/\1/p" <<<"$line")"
  sha="$(sed -nE 's/.* SHA256:([0-9a-f]+).*/\1/p' <<<"$line")"
  mkdir -p "$(dirname "$dest")"
  echo "check-chromium-patch: downloading $(basename "$dest")"
  if ! curl -fsSL --retry 3 -o "$dest.part" "$uri"; then
    rm -f "$dest.part"
    die "download failed: $uri (set CHROMIUM_VERSION to one whose source the archive serves)"
  fi
  [[ -n "$sha" ]] || die "the index lists no SHA256 for $uri"
  echo "$sha  $dest.part" | sha256sum -c --quiet - || die "SHA256 mismatch: $uri"
  mv "$dest.part" "$dest"
}
