"""nftables for the gateway: the generated ruleset, applying it, counters, neighbour lookups."""
