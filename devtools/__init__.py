"""Developer tools, never shipped: the local stack manager, the demo, the round trip, synthetic histories."""
