"""Tests of the benchmark harness itself (not of chanlog's speed)."""
