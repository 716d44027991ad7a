"""Benchmark of the relay against the Azure OpenAI emulator (issue 6): ``python -m bench``."""
