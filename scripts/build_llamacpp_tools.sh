#!/usr/bin/env bash
# Builds llama.cpp's CPU tools that pi's interoperability checks use (llama-convert-llama2c-to-ggml,
# llama-quantize, llama-perplexity) from ../shared/anchors' llama.cpp sources into build-llamacpp/.
# Then: PI_LLAMACPP_BIN=$PWD/build-llamacpp/build/bin ctest -R llamacpp (in pi's build folder).
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${PI_SHARED:-../shared}
src=build-llamacpp
if [ ! -f "$src/CMakeLists.txt" ]; then
  mkdir -p "$src"
  tar -C "$src" -xJf "$shared/anchors/llama.cpp-c392e509.tar.xz"
fi
cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=OFF -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF \
  -DGGML_OPENMP=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
cmake --build "$src/build" -j"$(nproc)" --target llama-convert-llama2c-to-ggml llama-quantize llama-perplexity
echo "built: $src/build/bin (set PI_LLAMACPP_BIN=$(pwd)/$src/build/bin)"
