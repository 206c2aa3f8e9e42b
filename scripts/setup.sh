#!/usr/bin/env bash
# Creates the virtual environment, installs curate (+ faiss-cpu and test tools) and makes sure FFmpeg (and, where
# apt can, Chromium for the report test) is there.
# FFmpeg: Debian's package (torchcodec needs its shared libraries); without root or apt the
# imageio-ffmpeg binary serves the command line and PyAV (which bundles its own libraries) decodes.
set -euo pipefail
venv=${1:-.venv}

sudo_cmd=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && sudo_cmd="sudo -n"
have_ffmpeg_libs() { ldconfig -p 2>/dev/null | grep -q 'libavcodec\.so'; }
if ! command -v ffmpeg >/dev/null 2>&1 || ! have_ffmpeg_libs; then
  if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || [ -n "$sudo_cmd" ]; }; then
    echo "setup: installing Debian's ffmpeg"
    export DEBIAN_FRONTEND=noninteractive
    $sudo_cmd apt-get update -qq || true
    $sudo_cmd apt-get install -y -qq ffmpeg >/dev/null || echo "setup: apt-get install ffmpeg failed; falling back to imageio-ffmpeg"
  else
    echo "setup: cannot install ffmpeg (no root/apt); curate will use the imageio-ffmpeg binary and PyAV"
  fi
fi

# Chromium (headless) renders the demo's report.html in a test; without it that test skips and says why.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || [ -n "$sudo_cmd" ]; }; then
    echo "setup: installing Debian's chromium (headless report check)"
    export DEBIAN_FRONTEND=noninteractive
    $sudo_cmd apt-get update -qq >/dev/null 2>&1 || true
    $sudo_cmd apt-get install -y -qq chromium >/dev/null 2>&1 \
      || echo "setup: chromium did not install; the report screenshot test will skip"
  fi
fi

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
"$venv/bin/python" -m pip install -q -e '.[cpu,test]'
"$venv/bin/python" -c "import curate, torch; print('setup: curate', curate.__version__, 'torch', torch.__version__)"
