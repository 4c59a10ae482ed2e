"""Helpers shared by the test suite: real processes on loopback (server, proxies, S3)."""
