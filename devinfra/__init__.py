"""Servers the tests and the benchmark start (development only: not in the installed package).

Both need them and neither owns them: the tests import :mod:`bench` to test it, and the benchmark
must not import the test suite.
"""
