"""Allow `python -m registry` as an alias of the `modelyard` command."""

from __future__ import annotations

from registry.cli import main

main()
