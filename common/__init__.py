"""Leaf helpers every package may import (they import nothing of ours): atomic files."""
