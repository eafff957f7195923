"""Workflows: the library entry points the CLI calls (train, predict, evaluate), one module per task."""
