"""Documents: reading a dropped file safely (in a limited child process), chunking it and
summarising it on the local tiers."""
