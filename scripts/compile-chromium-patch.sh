#!/usr/bin/env bash
# Compiles, with Chromium's own build (gn + ninja, Debian's toolchain and gn
# args), every translation unit and Rust target that chromium-patch/ adds or
# changes, against Debian's chromium source package.
#
#   scripts/check-chromium-patch.sh --compile --cache DIR
#
# Opt-in, not run by CI. The first run downloads the source (about 950 MB),
# unpacks it into DIR (about 10 GB), installs Debian's build dependencies
# with apt-get --no-remove (a package that would remove installed ones is
# unpacked into DIR instead: see below), applies Debian's patch series, then
# ours, copies the shmring sources in as chromium-patch/README.md says, runs
# `gn gen` with the args of debian/rules and builds only what the targets
# below need: each C++ translation unit is compiled with its own ninja
# command, after the generated headers it includes (found with `-M -MG`, in
# rounds) are built as ninja targets; cheap objects first, each compiled as
# soon as its own headers exist. A later run starts from DIR and rebuilds
# what changed.
#
# Environment:
#   CHROMIUM_VERSION   upstream version (default: the installed chromium's)
#   CHROMIUM_CACHE     the cache directory, if --cache is not given
#   JOBS               ninja -j (default 2); everything heavy runs under nice
#
# Prints one line per target (ok, or the first compiler error) and exits
# non-zero if any fails. Nothing is stubbed: what cannot be compiled here is
# listed with the reason.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
patch_dir="$repo/chromium-patch"
# shellcheck source=debian-source.sh
. "$repo/scripts/debian-source.sh"

die() { echo "check-chromium-patch: $*" >&2; exit 2; }
say() { echo "check-chromium-patch: $*"; }

# --- The targets --------------------------------------------------------------
# One line per target: KIND WHAT [FILES...]. FILES are the files of the series
# the target proves besides WHAT itself; every file the series touches is
# named once here (ffi/tests/chromium_patch.rs checks that).
#   object SOURCE     compile each object ninja builds from SOURCE
#   rust LABEL        build the GN target (Rust, bindgen or cxx) with ninja
#   gn-check LABEL    `gn check` the target's includes against its deps
#   none FILE REASON  nothing compiles FILE; REASON says why
compile_targets='
object content/public/common/content_switches.cc content/public/common/content_switches.h
object content/browser/renderer_host/render_process_host_impl.cc
object third_party/blink/renderer/modules/shmring/media_stream_track_shmring.cc third_party/blink/renderer/modules/shmring/media_stream_track_shmring.h
object third_party/blink/renderer/modules/shmring/shmring_audio_sink.cc third_party/blink/renderer/modules/shmring/shmring_audio_sink.h
object third_party/blink/renderer/modules/shmring/shmring_producer.cc third_party/blink/renderer/modules/shmring/shmring_producer.h
object third_party/blink/renderer/modules/shmring/shmring_video_sink.cc third_party/blink/renderer/modules/shmring/shmring_video_sink.h
object gen/third_party/blink/renderer/bindings/modules/v8/v8_media_stream_track.cc third_party/blink/renderer/modules/shmring/media_stream_track_shmring.idl third_party/blink/renderer/bindings/idl_in_modules.gni
object gen/third_party/blink/renderer/platform/runtime_enabled_features.cc third_party/blink/renderer/platform/runtime_enabled_features.json5
object gen/third_party/blink/common/features_generated.cc
rust //third_party/shmring:shmring_core
rust //third_party/shmring:shmring_media_sys
rust //third_party/shmring:shmring_media
rust //third_party/shmring:shmring_ffi_cxx_generated third_party/shmring/include/shmring-ffi/src/lib.rs.h
rust //third_party/shmring:shmring_ffi third_party/shmring/BUILD.gn
gn-check //third_party/shmring:producer
gn-check //third_party/blink/renderer/modules/shmring:shmring third_party/blink/renderer/modules/shmring/BUILD.gn third_party/blink/renderer/modules/BUILD.gn
none third_party/shmring/README.chromium metadata for the licence and security tooling, not built
none third_party/blink/renderer/modules/shmring/DEPS include rules for checkdeps, which the source package does not ship
'

# --- Arguments ------------------------------------------------------------------
cache="${CHROMIUM_CACHE:-}"
while (($#)); do
  case "$1" in
    --cache) cache="${2:?--cache needs a directory}"; shift 2 ;;
    --cache=*) cache="${1#--cache=}"; shift ;;
    *) die "unknown argument: $1" ;;
  esac
done
[[ -n "$cache" ]] || die "name a cache directory outside the repository: --cache DIR (about 30 GB)"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"
case "$cache/" in "$repo"/*) die "the cache must be outside the repository" ;; esac
jobs="${JOBS:-2}"
heavy=(nice -n 10)

version="${CHROMIUM_VERSION:-}"
if [[ -z "$version" ]]; then
  installed="$(dpkg-query -W -f='${Version}' chromium 2>/dev/null || true)"
  [[ -n "$installed" ]] || die "chromium is not installed; set CHROMIUM_VERSION"
  version="${installed#*:}"
  version="${version%%-*}"
fi
[[ "$version" =~ ^[0-9]+(\.[0-9]+){3}$ ]] || die "not a Chromium version: $version"
say "Chromium $version, cache $cache"
started=$SECONDS

# --- Source: download, unpack, Debian's patches and configure steps ------------
tree="$cache/chromium-$version"
if [[ ! -f "$tree/.shmring-prepared" ]]; then
  orig="$cache/chromium_$version.orig.tar.xz"
  debian="$cache/chromium_$version.debian.tar.xz"
  if [[ ! -f "$orig" || ! -f "$debian" ]]; then
    debian_source_setup "$cache/apt"
    debver="$(debian_source_package "$version")"
    [[ -f "$orig" ]] || debian_source_fetch "$debver" .orig.tar.xz "$orig"
    [[ -f "$debian" ]] || debian_source_fetch "$debver" .debian.tar.xz "$debian"
  fi
  rm -rf "$tree" "$tree.unpacking"
  mkdir -p "$tree.unpacking"
  say "unpacking the source"
  "${heavy[@]}" sh -c 'xz -T2 -dc "$1" | tar -x -C "$2" --strip-components=1' _ "$orig" "$tree.unpacking"
  tar -xJf "$debian" -C "$tree.unpacking"
  say "applying Debian's patch series"
  (
    cd "$tree.unpacking"
    # As dpkg-source applies a 3.0 (quilt) series: no fuzz, in order.
    sed -e 's/#.*//' -e '/^[[:space:]]*$/d' debian/patches/series | while read -r p _; do
      patch -p1 -s -N -F 0 --no-backup-if-mismatch <"debian/patches/$p" >/dev/null ||
        die "Debian's patch $p does not apply"
    done
    # debian/rules' configure steps that the build graph needs: its bindgen,
    # node, gperf, and the unbundled (system) libraries.
    arch="$(dpkg --print-architecture)"
    mkdir -p debian/bindgen/root
    (cd debian/bindgen/root && ar x "../bindgen_"*"_$arch.deb" && tar -xJf data.tar.xz)
    mkdir -p third_party/node/linux/node-linux-x64/bin third_party/gperf/cipd/bin
    cp "$(command -v node || echo /usr/bin/node)" third_party/node/linux/node-linux-x64/bin/ 2>/dev/null || true
    cp "$(command -v gperf || echo /usr/bin/gperf)" third_party/gperf/cipd/bin/ 2>/dev/null || true
    ./debian/scripts/unbundle
  )
  mv "$tree.unpacking" "$tree"
  touch "$tree/.shmring-prepared"
fi
say "source ready ($((SECONDS - started)) s)"

# --- Debian's build dependencies --------------------------------------------------
# Build-Depends of debian/control, less :native/:any, versions and <profiles>.
mapfile -t build_deps < <(
  awk '/^Build-Depends:/ {on = 1; sub(/^Build-Depends:/, "")} on && /^[A-Z][A-Za-z-]*:/ && !/^Build-Depends:/ {on = 0} on' \
    "$tree/debian/control" | tr ',' '\n' | grep -v '<' |
    sed -E 's/\(.*\)//; s/\|.*//; s/:(native|any)//; s/[[:space:]]//g' | grep .
)
missing_deps=()
for d in "${build_deps[@]}"; do
  dpkg-query -W -f='${Status}' "$d" 2>/dev/null | grep -q 'ok installed' || missing_deps+=("$d")
done
# apt-get never removes a package here (--no-remove). Each missing package is
# first simulated alone:
#  - installable without removing anything: installed;
#  - installable only by removing installed packages (Debian's libc++-19-dev
#    needs libunwind-19-dev, which conflicts with libunwind-dev): the packages
#    apt would install are downloaded and unpacked with dpkg -x under
#    $cache/unpacked-deps instead, and the compile is pointed at them (libc++'s
#    headers: -stdlib++-isystem; its libraries: -L, for the host tools
#    Chromium links);
#  - not installable at all (Debian's node-rollup-plugin-terser against a
#    nodejs from elsewhere; the JavaScript bundlers serve WebUI and DevTools,
#    nothing compiled here): left out, and said so.
unpacked="$cache/unpacked-deps"
install_deps=() unpack_deps=()
export DEBIAN_FRONTEND=noninteractive
: >"$cache/apt-install.log"
for d in "${missing_deps[@]}"; do
  sim="$(apt-get install -s --no-install-recommends "$d" 2>&1 || true)"
  printf '%s\n' "--- $d" "$sim" >>"$cache/apt-install.log"
  if grep -q '^Remv ' <<<"$sim"; then
    mapfile -t -O "${#unpack_deps[@]}" unpack_deps < <(sed -n 's/^Inst \([^ ]*\) .*/\1/p' <<<"$sim")
    say "$d would remove $(sed -n 's/^Remv \([^ ]*\) .*/\1/p' <<<"$sim" | tr '\n' ' ')- unpacking it into the cache instead of installing it"
  elif grep -q '^Inst ' <<<"$sim"; then
    install_deps+=("$d")
  else
    say "not installable here, left out: $d ($(grep -m1 -E '^ .*: (Depends|Conflicts|Breaks)|^E:' <<<"$sim" | sed 's/^ *//'))"
  fi
done
if ((${#install_deps[@]})); then
  say "installing ${#install_deps[@]} build dependencies: ${install_deps[*]}"
  apt-get install -y -qq --no-remove --no-install-recommends "${install_deps[@]}" >>"$cache/apt-install.log" 2>&1 ||
    die "apt-get install of the build dependencies failed; see $cache/apt-install.log"
fi
mkdir -p "$unpacked/debs"
for d in "${unpack_deps[@]}"; do
  stamp="$unpacked/debs/$d.unpacked"
  [[ -f "$stamp" ]] && continue
  (cd "$unpacked/debs" && apt-get download "$d" >>"$cache/apt-install.log" 2>&1) ||
    die "apt-get download $d failed; see $cache/apt-install.log"
  dpkg -x "$(ls -t "$unpacked/debs/${d}_"*.deb | head -1)" "$unpacked/root"
  touch "$stamp"
done
# Unpacked libraries' relative symlinks point at runtime files that the
# installed packages hold (libunwind.so -> libunwind.so.1): resolve them there.
if [[ -d "$unpacked/root" ]]; then
  find "$unpacked/root" -xtype l | while read -r l; do
    t="$(readlink "$l")"
    real="$(dirname "${l#"$unpacked/root"}")/$t"
    if [[ "$t" != /* && -e "$real" ]]; then ln -sfn "$real" "$l"; fi
  done
fi
# What the toolchain flags gain from the unpacked packages (empty when apt
# installed everything).
extra_cxxflags="" extra_ldflags=""
if [[ -d "$unpacked/root" ]]; then
  libcxx_inc="$(find "$unpacked/root" -type d -path '*/include/c++/v1' | head -1)"
  if [[ -n "$libcxx_inc" ]]; then extra_cxxflags="-stdlib++-isystem $libcxx_inc"; fi
  while read -r dir; do
    extra_ldflags+="${extra_ldflags:+ }-L$dir"
  done < <(find "$unpacked/root" \( -name 'lib*.so' -o -name 'lib*.a' \) -printf '%h\n' | sort -u)
fi

# --- Our series and the shmring sources, synced into the tree --------------------
# The tree keeps Debian's state; the files our series last installed are
# listed in .shmring-installed, and the Chromium files it modifies are kept
# pristine under $cache/pristine. A file is rewritten only when its content
# changes, so ninja rebuilds only what really changed.
shopt -s nullglob
patches=("$patch_dir"/[0-9][0-9][0-9][0-9]-*.patch)
shopt -u nullglob
((${#patches[@]})) || die "no patches in $patch_dir"
pristine="$cache/pristine-$version"
installed="$tree/.shmring-installed"
touch "$installed"
stage="$cache/stage"
rm -rf "$stage"
mkdir -p "$stage" "$pristine"
mapfile -t modified < <(
  for p in "${patches[@]}"; do
    awk '/^diff --git / {path = substr($3, 3); isnew = 0; next}
         /^new file mode/ {isnew = 1; next}
         /^--- a\// {if (!isnew) print path}' "$p"
  done | sort -u
)
for f in "${modified[@]}"; do
  if [[ ! -f "$pristine/$f" ]]; then
    grep -qxF "$f" "$installed" && die "$f: no pristine copy, and the tree holds our version; delete $tree"
    [[ -f "$tree/$f" ]] || die "$f: not in Chromium $version"
    mkdir -p "$(dirname "$pristine/$f")"
    cp -p "$tree/$f" "$pristine/$f"
  fi
  mkdir -p "$(dirname "$stage/$f")"
  cp "$pristine/$f" "$stage/$f"
done
for p in "${patches[@]}"; do
  if ! msg="$(cd "$stage" && git apply --whitespace=nowarn "$p" 2>&1)"; then
    printf '  %s\n' "$msg" >&2
    die "$(basename "$p") does not apply to Chromium $version (run scripts/check-chromium-patch.sh)"
  fi
done
say "applied ${#patches[@]} patches"
src="$stage/third_party/shmring/src"
mkdir -p "$src/crates"
cp -r "$repo/crates/shmring" "$repo/crates/shmring-media" "$src/crates/"
cp -r "$repo/ffi" "$src/"
(cd "$stage" && find . -type f -printf '%P\n' | sort) >"$cache/installing"
while read -r f; do
  if ! cmp -s "$stage/$f" "$tree/$f"; then
    mkdir -p "$(dirname "$tree/$f")"
    cp "$stage/$f" "$tree/$f"
  fi
done <"$cache/installing"
# What an earlier run installed and this one does not: back to Chromium's.
comm -23 <(sort -u "$installed") "$cache/installing" | while read -r f; do
  if [[ -f "$pristine/$f" ]]; then cp -p "$pristine/$f" "$tree/$f"; else rm -f "$tree/$f"; fi
done
mv "$cache/installing" "$installed"

# --- gn gen with debian/rules' args and environment ------------------------------
build_env="$cache/build-env"
(
  cd "$tree"
  printf 'include debian/rules\nprint-build-env:\n\t@env | grep -E "^(CC|CXX|AR|NM|CXXFLAGS|LDFLAGS)=" | sort\n\t@echo "GN_ARGS=$(defines)"\n' >"$cache/print-build-env.mk"
  make -s -f "$cache/print-build-env.mk" print-build-env
) >"$build_env" || die "could not read the build settings from debian/rules"
while IFS= read -r line; do
  export "${line%%=*}=${line#*=}"
done < <(grep -v '^GN_ARGS=' "$build_env")
# The unbundle toolchain reads CXXFLAGS and LDFLAGS when gn gen runs.
if [[ -n "$extra_cxxflags" ]]; then export CXXFLAGS="$CXXFLAGS $extra_cxxflags"; fi
if [[ -n "$extra_ldflags" ]]; then export LDFLAGS="$extra_ldflags $LDFLAGS"; fi
gn_args="$(sed -n 's/^GN_ARGS=//p' "$build_env")"
# gn gen again when the args or the toolchain's environment change.
gn_stamp="$(printf '%s\n' "$gn_args" "CC=$CC" "CXX=$CXX" "CXXFLAGS=$CXXFLAGS" "LDFLAGS=$LDFLAGS")"
out="out/shmring"
cd "$tree"
if [[ ! -f "$out/build.ninja" ]] || [[ "$(cat "$out/.shmring-gn-args" 2>/dev/null)" != "$gn_stamp" ]]; then
  say "gn gen $out (debian/rules' args)"
  "${heavy[@]}" gn gen "$out" --args="$gn_args" >"$cache/gn-gen.log" 2>&1 ||
    { tail -20 "$cache/gn-gen.log" >&2; die "gn gen failed; see $cache/gn-gen.log"; }
  printf '%s' "$gn_stamp" >"$out/.shmring-gn-args"
else
  # ninja re-runs gn itself when a BUILD.gn or .gni changed.
  "${heavy[@]}" ninja -C "$out" build.ninja >"$cache/gn-gen.log" 2>&1 ||
    { tail -20 "$cache/gn-gen.log" >&2; die "gn gen failed; see $cache/gn-gen.log"; }
fi
say "build graph ready ($((SECONDS - started)) s)"
cd "$out"
ninja_targets="$cache/ninja-targets"
if [[ ! -f "$ninja_targets" || build.ninja -nt "$ninja_targets" ]]; then
  ninja -t targets all | sed 's/: .*//' | sort -u >"$ninja_targets"
fi

# --- Running the targets ----------------------------------------------------------
results=()
failed=0
report() {  # STATUS TARGET DETAIL
  results+=("$(printf '%-13s %s%s' "$1" "$2" "${3:+  $3}")")
  say "${results[-1]}"
  [[ "$1" == FAIL ]] && failed=1
  return 0
}
first_error() {  # LOG: the first compiler or ninja error, one line
  local line
  line="$(sed 's/\x1b\[[0-9;]*m//g' "$1" | grep -m1 -E '(^|: )(fatal )?error(\[E[0-9]+\])?:|^ninja: error' || true)"
  [[ -n "$line" ]] || line="$(sed 's/\x1b\[[0-9;]*m//g' "$1" | grep -v '^\[' | head -1)"
  printf '%s' "${line:0:300}"
}
logs="$cache/logs"
rm -rf "$logs"
mkdir -p "$logs"

objects=() rusts=() checks=()
while read -r kind what rest; do
  case "$kind" in
    object) objects+=("$what") ;;
    rust) rusts+=("$what") ;;
    gn-check) checks+=("$what") ;;
    none) report "not compiled" "$what" "$rest" ;;
    '') ;;
    *) die "unknown target kind $kind" ;;
  esac
done <<<"$compile_targets"

# Rust, bindgen and cxx: plain ninja targets (their dependencies are few).
# One ninja run for all (loading Chromium's build graph takes a while); only
# when it fails is each target built alone, to name what failed.
rust_log="$logs/rust.log"
if "${heavy[@]}" ninja -j"$jobs" "${rusts[@]#//}" >"$rust_log" 2>&1; then
  for label in "${rusts[@]}"; do report ok "rust $label"; done
else
  for label in "${rusts[@]}"; do
    log="$logs/$(tr '/:' '__' <<<"${label#//}").log"
    if "${heavy[@]}" ninja -j"$jobs" "${label#//}" >"$log" 2>&1; then
      report ok "rust $label"
    else
      report FAIL "rust $label" "$(first_error "$log")"
    fi
  done
fi
say "Rust targets done ($((SECONDS - started)) s)"

# gn check: includes against declared deps, as Chromium's presubmit does.
if ((${#checks[@]})); then
  log="$logs/gn-check.log"
  for label in "${checks[@]}"; do
    if "${heavy[@]}" gn check . "$label" >"$log" 2>&1; then
      report ok "gn-check $label"
    else
      report FAIL "gn-check $label" "$(grep -m1 -A3 '^ERROR' "$log" | tr '\n' ' ')"
    fi
  done
fi

# C++: each object's own compile command. Generated sources are ninja targets.
# The generated headers a translation unit includes are found with -M -MG
# (a missing header is printed as spelled) and built as ninja targets, in
# rounds, since a generated header may include further generated headers.
#
# The objects go in stages, cheapest first: the content switches (a few
# buildflag headers), then the generated runtime-feature sources, then the
# Blink module and the V8 bindings (Blink's mojom and bindings headers), and
# render_process_host_impl.cc (most of content's mojom, perfetto's protos)
# last. Within a stage each object is compiled as soon as nothing it includes
# is missing, so each `ok` is printed when it is earned and a run that is cut
# short has proven the cheap objects already.
stage_of() {  # SOURCE: its stage number
  case "$1" in
    content/public/common/*) echo 1 ;;
    gen/third_party/blink/renderer/platform/* | gen/third_party/blink/common/*) echo 2 ;;
    third_party/blink/renderer/modules/* | gen/third_party/blink/renderer/bindings/*) echo 3 ;;
    *) echo 4 ;;
  esac
}
node_of() { case "$1" in gen/*) echo "$1" ;; *) echo "../../$1" ;; esac; }
declare -A object_of=() command_of=() source_of=() last_wanted=()
for s in "${objects[@]}"; do
  grep -qxF "$(node_of "$s")" "$ninja_targets" || [[ -f "$(node_of "$s")" ]] || die "$s: not in the build graph"
done
nodes=()
for s in "${objects[@]}"; do nodes+=("$(node_of "$s")"); done
# One query for all: each node's block lists the objects compiled from it.
ninja -t query "${nodes[@]}" | awk '
  /^[^ ]/ {node = $0; sub(/:$/, "", node); out = 0; next}
  /^  outputs:/ {out = 1; next}
  /^  [a-z]/ {out = 0; next}
  out && /\.o$/ {sub(/^ +/, ""); print node, $0}' >"$logs/objects"
for s in "${objects[@]}"; do
  object_of[$s]="$(awk -v n="$(node_of "$s")" '$1 == n {print $2}' "$logs/objects" | tr '\n' ' ')"
  [[ -n "${object_of[$s]// /}" ]] || die "$s: ninja compiles it into no object"
  for o in ${object_of[$s]}; do source_of[$o]="$s"; done
done
all_objs=()
for s in "${objects[@]}"; do read -ra o <<<"${object_of[$s]}"; all_objs+=("${o[@]}"); done
mapfile -t cmds < <(ninja -t commands -s "${all_objs[@]}")
((${#cmds[@]} == ${#all_objs[@]})) || die "ninja gave ${#cmds[@]} commands for ${#all_objs[@]} objects"
for i in "${!all_objs[@]}"; do command_of[${all_objs[$i]}]="${cmds[$i]}"; done

# OBJ: prints each included file that does not exist yet as the ninja target
# that generates it (tried below each generated include directory of the
# command), or as ?FILE when no target does.
missing_headers() {
  local obj="$1" dep="$logs/$(tr '/' '_' <<<"$1").M" cmd f d found
  cmd="$(sed -E 's/ -MD / /; s/ -MF [^ ]+/ /; s/ -o [^ ]+/ /' <<<"${command_of[$obj]}")"
  local -a gen_dirs
  mapfile -t gen_dirs < <(tr ' ' '\n' <<<"$cmd" | sed -n 's/^-I\(gen.*\)$/\1/p' | sort -u)
  rm -f "$dep"
  "${heavy[@]}" sh -c "$cmd -M -MG -MF $dep -o /dev/null" >/dev/null 2>&1 || true
  [[ -f "$dep" ]] || return 0
  sed -e 's/\\$//' "$dep" | tr ' ' '\n' | sed '1,2d' | grep . | while read -r f; do
    [[ -e "$f" ]] && continue
    found=""
    for d in "${gen_dirs[@]}"; do
      if grep -qxF "$d/$f" "$ninja_targets"; then found="$d/$f"; break; fi
    done
    printf '%s\n' "${found:-?$f}"
  done | sort -u
}
compile_object() {  # OBJ
  local o="$1" log warnings
  log="$logs/$(tr '/' '_' <<<"$o").log"
  mkdir -p "$(dirname "$o")"
  if "${heavy[@]}" sh -c "${command_of[$o]}" >"$log" 2>&1; then
    # Debian builds without -Werror; upstream Chromium would stop here.
    # Counted: warnings about the source (FILE:LINE:COL), not clang's about
    # its command line (debian/rules' -stdlib=libc++ is unused when compiling).
    warnings="$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -cE '^[^ ]+:[0-9]+:[0-9]+: warning:' || true)"
    report ok "object ${source_of[$o]}" "($o$( ((warnings)) && echo ", $warnings warnings, see $log"))"
  else
    report FAIL "object ${source_of[$o]}" "$(first_error "$log")"
  fi
}
max_rounds="${HEADER_ROUNDS:-12}"
for stage in 1 2 3 4; do
  pending=() gen_sources=()
  for s in "${objects[@]}"; do
    [[ "$(stage_of "$s")" == "$stage" ]] || continue
    read -ra o <<<"${object_of[$s]}"
    pending+=("${o[@]}")
    [[ "$s" == gen/* ]] && gen_sources+=("$s")
  done
  ((${#pending[@]})) || continue
  if ((${#gen_sources[@]})); then
    say "stage $stage: generating ${gen_sources[*]}"
    "${heavy[@]}" ninja -j"$jobs" -k 0 "${gen_sources[@]}" >"$logs/generated-sources-$stage.log" 2>&1 || true
  fi
  for ((round = 1; ; round++)); do
    waiting=() wanted=()
    for o in "${pending[@]}"; do
      mapfile -t missing < <(missing_headers "$o")
      mine=() unknown=()
      for h in "${missing[@]}"; do
        if [[ "$h" == \?* ]]; then unknown+=("${h#\?}"); else mine+=("$h"); fi
      done
      if ((${#mine[@]} == 0)); then
        # Nothing left that a target generates: compile (a header no target
        # generates then fails the compile with its real error).
        ((${#unknown[@]} == 0)) || say "${source_of[$o]} includes files no target generates: ${unknown[*]}"
        compile_object "$o"
      elif [[ "${last_wanted[$o]:-}" == "${mine[*]}" ]]; then
        report FAIL "object ${source_of[$o]}" "generated headers not built: ${mine[*]:0:3}; $(first_error "$logs/headers-$stage-$((round - 1)).log")"
      elif ((round > max_rounds)); then
        report FAIL "object ${source_of[$o]}" "${#mine[@]} generated headers still missing after $max_rounds rounds"
      else
        last_wanted[$o]="${mine[*]}"
        waiting+=("$o")
        wanted+=("${mine[@]}")
      fi
    done
    ((${#waiting[@]})) || break
    mapfile -t wanted < <(printf '%s\n' "${wanted[@]}" | sort -u)
    say "stage $stage, round $round: building ${#wanted[@]} generated headers for ${#waiting[@]} objects ($((SECONDS - started)) s)"
    "${heavy[@]}" ninja -j"$jobs" -k 0 "${wanted[@]}" >"$logs/headers-$stage-$round.log" 2>&1 || true
    pending=("${waiting[@]}")
  done
done
say "objects done ($((SECONDS - started)) s)"

echo
printf '%s\n' "${results[@]}"
echo
compiled=$(printf '%s\n' "${results[@]}" | grep -c '^ok ' || true)
say "Chromium $version: $compiled targets ok, $(printf '%s\n' "${results[@]}" | grep -c '^FAIL' || true) failed," \
  "$((SECONDS - started)) s, cache $(du -sh "$cache" 2>/dev/null | cut -f1)"
exit "$failed"
