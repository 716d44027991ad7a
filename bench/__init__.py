"""Benchmark of the relay against the Azure OpenAI emulator: ``python -m bench``."""
