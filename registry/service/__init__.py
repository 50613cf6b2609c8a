"""Use cases of the node, over the metadata database and the blob store. No HTTP, no env."""
