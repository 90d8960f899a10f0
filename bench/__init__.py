"""Benchmark harness: our API against a bare-Django ceiling and a stock DRF baseline."""
