"""A simulated school in network namespaces, and the test servers that live in it."""
