"""Shared pytest configuration: registers the integration rig's fixtures."""

pytest_plugins = ["tests.rig.fixtures"]
