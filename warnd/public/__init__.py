"""Reaching the public: recipient lists, opt-outs, targeted mass SMS within carriers' budgets,
delivery tracking and coverage (docs/public.md)."""
