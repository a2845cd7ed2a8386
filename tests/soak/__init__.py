"""Soak tests (marker ``soak``): long runs left out of the default run."""
