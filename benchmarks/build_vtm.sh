#!/usr/bin/env bash
# Build VTM's EncoderApp and DecoderApp from a VVC reference-software source you provide, OUTSIDE this
# repository, into the layout HARNESS_VTM_DIR expects:
#     OUT/bin/EncoderApp*  OUT/bin/DecoderApp*  OUT/cfg/encoder_intra_vtm.cfg  OUT/VERSION
# Usage:
#     bash benchmarks/build_vtm.sh SOURCE OUT [REV]
#   SOURCE  a VTM git repository (a clone, a bare mirror) or an unpacked source tree
#   OUT     where to build (must not be inside this repository; VTM's sources and binaries are never committed)
#   REV     the revision to build from a git SOURCE (default: VTM-23.3, the CTC's version,
#           commit cf3cd016e2618490f58ab04e2eb167d38410b659)
# Then: export HARNESS_VTM_DIR=OUT   (and `harness plugins` shows vtm as runnable)
# Takes ~15-30 min on 2 cores; JOBS=N sets make's parallelism (default: all cores).
set -euo pipefail
[ $# -ge 2 ] || { sed -n 2,13p "$0"; exit 2; }
src=$1; out=$2; rev=${3:-VTM-23.3}
repo=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"; out=$(cd "$out" && pwd)
case "$out/" in "$repo"/*) echo "error: $out is inside the repository; build VTM elsewhere" >&2; exit 1;; esac
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
  commit=$(git -C "$src" rev-parse --verify "$rev^{commit}")
  rm -rf "$out/src"; mkdir -p "$out/src"
  git -C "$src" archive "$commit" | tar -x -C "$out/src"
  echo "$rev $commit" > "$out/VERSION"
else
  [ -f "$src/CMakeLists.txt" ] || { echo "error: $src is neither a git repository nor a VTM source tree" >&2; exit 1; }
  rm -rf "$out/src"; cp -a "$src" "$out/src"
  echo "source tree $src" > "$out/VERSION"
fi
cmake -S "$out/src" -B "$out/build" -DCMAKE_BUILD_TYPE=Release >"$out/cmake.log"
make -C "$out/build" -j "${JOBS:-$(nproc)}" EncoderApp DecoderApp >"$out/make.log" 2>&1 || { tail -20 "$out/make.log" >&2; exit 1; }
mkdir -p "$out/bin" "$out/cfg"
find "$out/src/bin" -maxdepth 3 -type f \( -name 'EncoderApp*' -o -name 'DecoderApp*' \) -exec cp {} "$out/bin/" \;
cp "$out/src/cfg/encoder_intra_vtm.cfg" "$out/cfg/"
ls "$out"/bin/EncoderApp* "$out"/bin/DecoderApp* >/dev/null
"$(ls "$out"/bin/EncoderApp* | head -1)" --version 2>/dev/null | grep -m1 -i "version" || true
echo "built; export HARNESS_VTM_DIR=$out"
