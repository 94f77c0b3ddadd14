"""Read models for people: the duty room's board, coverage summaries. Queries only; they
change nothing (every transition is owned by warnd.engine)."""
