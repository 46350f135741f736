"""The emulated world: the scenario, its seeded records, clock, catalog of streams, faults and ground truth."""
