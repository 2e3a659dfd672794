"""Tensors <-> vectors, quantization into Z_{2^b}, modular helpers, the binary codec."""
