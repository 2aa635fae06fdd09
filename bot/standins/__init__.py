"""Local servers that follow third-party APIs' published contracts, for the demo and the tests."""
