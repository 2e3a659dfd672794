"""Adapters that let other federated-learning systems use secagg.

Top floor of the package: nothing in the core (primitives, encoding, masking,
lightsecagg, he, dp) imports it.  Each integration imports its framework lazily and
fails with a message that names the pip extra to install.
"""
