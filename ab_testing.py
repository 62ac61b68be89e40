"""Compatibility import for the seed's examples: `from ab_testing import ABTestingFramework`."""

from experiments.framework import ABTestingFramework

__all__ = ["ABTestingFramework"]
