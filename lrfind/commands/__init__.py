"""The commands as functions, config in and outcome out: `run`, `analyze`, `apply`, `train`.
The CLI parses flags and prints; everything else a command does lives here or below."""
