"""Options, their defaults with reasons, and the files they are read from (no torch, no numpy).

from lrfind.settings.options import RunConfig
RunConfig(model="mlp", steps=200)   # every field checked on construction
"""
