"""Checks: pure functions over recorded exchanges, in one registry.

Importing :mod:`wic_conformance.validate.all_checks` registers every check.
"""
