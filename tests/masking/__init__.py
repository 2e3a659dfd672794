"""Tests of the SecAgg / SecAgg+ state machines (secagg.masking)."""
