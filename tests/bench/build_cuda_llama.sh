#!/usr/bin/env bash
# For bench_cuda.py and bench_summary.py on a machine with an NVIDIA GPU and CUDA's
# compiler: builds llama.cpp for CUDA from the source that llama-cpp-python's sdist vendors
# (the app's runtime and an office's llama-server are then the version the app ships):
# llama-server, and the shared libraries llama-cpp-python loads from LLAMA_CPP_LIB_PATH.
#
#   tests/bench/build_cuda_llama.sh SOURCE BUILD [CUDA_ARCHITECTURES [CMAKE_ARG...]]
#
# SOURCE: the sdist's vendor/llama.cpp; BUILD: a folder; results in BUILD/bin. The
# architectures default to the GPUs present (CMake's "native").
set -euo pipefail
source_dir="$1" build_dir="$2" arch="${3:-native}"
shift $(( $# < 3 ? $# : 3 ))
cmake -S "$source_dir" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" \
    -DGGML_CUDA_NCCL=OFF -DBUILD_SHARED_LIBS=ON -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF "$@"
cmake --build "$build_dir" --target llama-server llama -j "$(nproc)"
