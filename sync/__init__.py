"""Pull-based replication between nodes: the planner (pure), the puller and its loop."""
