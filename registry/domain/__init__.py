"""Pure domain model: names, digests, commits, errors. No I/O, no globals."""
