#!/usr/bin/env bash
# Rebuild assets/onnxruntime-web/ from the npm registry: the WASM build of onnxruntime-web that the page runs the
# dial's graphs with (petl_core.export). Usage: bash scripts/vendor_onnxruntime_web.sh [VERSION]
set -euo pipefail
version="${1:-1.31.1}"
cd "$(dirname "$0")/.."
target=assets/onnxruntime-web
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "onnxruntime-web@$version" >/dev/null && tar xzf "onnxruntime-web-$version.tgz")
dist="$work/package/dist"
mkdir -p "$target"
# the ES module with the WASM glue bundled in (77 KB), and the one WASM binary it loads (SIMD, threads when the page
# is cross-origin isolated), gzipped: the page unpacks it (DecompressionStream) and hands it to the runtime
cp "$dist/ort.wasm.bundle.min.mjs" "$target/"
gzip -9 -n -c "$dist/ort-wasm-simd-threaded.wasm" > "$target/ort-wasm-simd-threaded.wasm.gz"
node -e 'const p=require(process.argv[1]); if (p.license !== "MIT") { console.error("licence is " + p.license); process.exit(1) }' \
  "$work/package/package.json"
echo "$version" > "$target/VERSION"
ls -l "$target"
