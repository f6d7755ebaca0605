"""Helpers shared by the tests (this package holds no tests): the command
line and the run fixture's plumbing (run), the simulator in process (sim),
synthetic run.json documents (synthetic_run), headless Chromium (chromium),
a tokenizer trained on the spot (tokenizer), a real engine (engines)."""
