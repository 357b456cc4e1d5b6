"""Kernel tests: tests/ops/test_<module>.py tests refquant/ops/<module>.py; shared helpers in helpers.py and contrib_helpers.py."""
