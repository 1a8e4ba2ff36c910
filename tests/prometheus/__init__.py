"""Prometheus rules: promtool checks and the rules' unit tests."""
