"""The lab's benchmarks: ``python -m bench``, one module per section.

Every number is a ratio against an anchor timed in the same run, interleaved
round by round, because the machines are shared and absolute timings drift.
"""
