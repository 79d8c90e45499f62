"""Interoperability with other detection libraries."""
