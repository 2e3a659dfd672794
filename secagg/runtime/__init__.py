"""The runtime: what runs rounds, on every engine (see DESIGN.md).

:mod:`secagg.runtime.schemes` holds the client and server halves of every
aggregation scheme (float update → protocol input → float aggregate).
"""
