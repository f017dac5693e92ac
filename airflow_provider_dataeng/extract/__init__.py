"""Idempotent, partition-targeted extracts: streaming COPY, extract modes, schema drift, dedup."""
