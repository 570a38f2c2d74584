#!/usr/bin/env bash
# Fetch ONNX Runtime C/C++ headers for building the runtime extension.
#
# The onnxruntime pip wheel ships the shared library but no headers. Debian trixie's
# libonnxruntime-dev (1.21) carries them; 1.21 headers work with the newer wheel library
# because the C API is versioned and loaded through OrtGetApiBase at import time.
# The .deb is fetched with a side apt configuration built from this machine's own
# Debian sources (no host name is written here) and unpacked into an ignored folder.
# Usage: scripts/fetch_ort_headers.sh [DEST]   (default: third_party/onnxruntime)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$here/third_party/onnxruntime}
if [ -f "$dest/include/onnxruntime_cxx_api.h" ]; then
  echo "ONNX Runtime headers already in $dest/include"; exit 0
fi
src=/etc/apt/sources.list.d/debian.sources
uri=""
if [ -f "$src" ]; then
  uri=$(awk '/^URIs:/ {print $2; exit}' "$src")
fi
if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
  uri=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list)
fi
if [ -z "$uri" ]; then
  echo "error: no Debian mirror URI found in $src or /etc/apt/sources.list;" \
       "install libonnxruntime-dev or put the headers in $dest/include" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/etc/sources.list.d"
printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
  "$uri" > "$work/etc/sources.list.d/trixie.sources"
aptopts=(-o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache"
         -o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$work/etc/sources.list.d"
         -o "Dir::State::status=/dev/null" -o "APT::Sandbox::User=root" -o "Debug::NoLocking=1")
echo "fetching libonnxruntime-dev (trixie) package index..."
apt-get "${aptopts[@]}" update -qq
( cd "$work" && apt-get "${aptopts[@]}" download libonnxruntime-dev )
deb=$(ls "$work"/libonnxruntime-dev_*.deb | head -1)
mkdir -p "$work/x"
dpkg -x "$deb" "$work/x"
inc=$(dirname "$(find "$work/x" -name onnxruntime_cxx_api.h | head -1)")
rm -rf "$dest.tmp" && mkdir -p "$dest.tmp/include"
cp -r "$inc"/. "$dest.tmp/include/"
basename "$deb" > "$dest.tmp/SOURCE_PACKAGE"
rm -rf "$dest" && mv "$dest.tmp" "$dest"
echo "ONNX Runtime headers in $dest/include ($(cat "$dest/SOURCE_PACKAGE"))"
