# Sourced by the scripts that a fresh Debian machine runs first: installs
# the Debian packages the workspace builds and tests with, when missing.
#
#   libclang-dev      bindgen (shmring-media's frame headers)
#   clang, libclang-rt-dev   the C++ harness under ASan/UBSan and TSan
#   pkg-config
#   chromium          the browser bridge's and the launcher's tests
#   ffmpeg            the encoder (ffmpeg, ffprobe)
#   nodejs            the bot driver (examples/bot, playwright-core); npm is
#                     installed too where the nodejs package lacks it
#   python3-pip       when python3 has no pip: the bot benchmark's Python
#                     receiver (websockets from PyPI)
#   libgstreamer1.0-dev, libgstreamer-plugins-base1.0-dev
#                     the GStreamer plugin (crates/gst-shmring); libunwind-dev
#                     by name, since gstreamer-1.0.pc requires libunwind.pc
#                     and LLVM's libunwind-*-dev satisfy the package's
#                     dependency without shipping it
#   gstreamer1.0-tools, -plugins-base, -good, -bad, -ugly, -libav
#                     the plugin's tests: gst-inspect-1.0, gst-launch-1.0,
#                     videoconvert, x264enc, mp4mux, wavenc, pngenc, shmsink
shmring_packages=(libclang-dev clang libclang-rt-dev pkg-config chromium ffmpeg nodejs
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libunwind-dev
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav)

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

# Debian's nodejs comes without npm (other builds of nodejs bundle it).
install_npm_if_missing() {
  command -v npm >/dev/null 2>&1 || install_missing_packages npm
}

# pip for the python3 on PATH (Debian's needs python3-pip).
install_pip_if_missing() {
  python3 -m pip --version >/dev/null 2>&1 || install_missing_packages python3-pip
}
