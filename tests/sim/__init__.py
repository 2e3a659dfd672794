"""Tests of the in-process runtime and `secagg simulate` (secagg.sim)."""
