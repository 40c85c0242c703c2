"""Benchmarks of the Public Booking API's hot path: `make bench`. Not part of the test suite."""
