"""The Xet protocol's data: hashes and their string form, xorbs, shards and file
reconstruction, as pure values and functions (see `../shared/docs/xet-protocol.md`)."""
