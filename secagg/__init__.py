"""secagg: privacy-preserving aggregation for federated learning of LLMs.

The server learns only the aggregate of the clients' updates.  Three protocol
families live here: pairwise-masked secure aggregation (:mod:`secagg.masking`),
homomorphic summation (:mod:`secagg.he`) and differential privacy
(:mod:`secagg.dp`); :mod:`secagg.train` is a minimal FedAvg loop that uses them.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
