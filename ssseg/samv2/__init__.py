"""Command-line entry point of SAMV2: ``ssseg-samv2`` / ``python -m ssseg.samv2``."""
