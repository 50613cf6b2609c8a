"""A bounded load generator for one node over loopback, shared by tests/e2e/test_load.py and
bench/load.py. It is a client only: it speaks HTTP to a node and reads /proc, nothing more."""
