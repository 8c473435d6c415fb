"""``python -m transferkit`` (what ``torchrun -m transferkit`` and ``accelerate launch -m transferkit`` run)."""

from .cli import main

main()
