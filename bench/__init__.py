"""Benchmarks with a bare-Pipecat baseline measured in the same run (`make bench`)."""
