"""The benchmark suite: `python -m tests.bench` runs every benchmark, prints each figure
beside its goal and its baseline from the same run, and rewrites RESULTS.md."""
