"""The hazmat layer: thin, typed wrappers over ``cryptography`` plus Shamir sharing.

Nothing here does network or disk I/O, and nothing here touches ``numpy.random``
or :mod:`random`.  Randomness comes from a :class:`~secagg.primitives.rand.RandomSource`
(``os.urandom`` by default).  Byte-exact definitions: ``protocols/primitives.md``.
"""
