"""The I/O side of warnd: database transactions, workers and wiring around the pure logic."""
