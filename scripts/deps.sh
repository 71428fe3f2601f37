# Sourced by the scripts that a fresh Debian machine runs first: installs
# the Debian packages the workspace builds and tests with, when missing.
#
#   libclang-dev      bindgen (shmring-media's frame headers)
#   clang, libclang-rt-dev   the C++ harness under ASan/UBSan and TSan
#   pkg-config
#   chromium          the browser bridge's and the launcher's tests
#   ffmpeg            the encoder (ffmpeg, ffprobe)
shmring_packages=(libclang-dev clang libclang-rt-dev pkg-config chromium ffmpeg)

install_missing_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  printf '\n== installing %s\n' "${missing[*]}"
  local sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
