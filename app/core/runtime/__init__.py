"""The embedded runtime: GGUF models, the GPU inventory, the GPU split, and the
supervised llama.cpp child process that serves a model on 127.0.0.1."""
