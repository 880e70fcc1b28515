"""Pure processing logic: validation, enrichment, ward resolution, situation rules.

Nothing in this package does I/O, talks to Kafka or reads the clock: time and reference data
are passed in, so every function can be tested with exact expected results.
"""
