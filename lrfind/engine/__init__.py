"""The torch side of lrfind: the one sweep loop (one model or stacked copies), torch
schedulers from schedule sections, the trainer that verifies them, and torchrun ranks."""
