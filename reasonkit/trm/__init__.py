"""Tiny Recursive Models: recursive refinement on puzzles (the ``trm`` stage)."""
