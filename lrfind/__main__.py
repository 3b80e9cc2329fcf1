"""`python -m lrfind ...` (also what `torchrun -m lrfind` runs)."""

from lrfind.cli import main

main()
