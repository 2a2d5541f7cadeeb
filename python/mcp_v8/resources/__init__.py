"""Falcon resources, one module per group of the HTTP contract (openapi.json)."""
