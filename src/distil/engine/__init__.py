"""The training engine: objective (weighted terms), teacher outputs (cache or online), the loop, measurement."""
