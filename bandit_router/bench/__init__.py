"""Benchmarks and the soak, with the load they generate and the scripted OpenAI-compatible backend they call."""
