"""Benchmarks that distil runs itself and writes as tables: ``distil bench methods``."""
