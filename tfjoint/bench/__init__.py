"""Benchmarks that reproduce published joint-modeling experiments through the package's own
model builder: ``tfjoint bench <name>``."""
