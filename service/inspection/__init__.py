"""The consistency inspector: proof, measured continuously, that the cache does not lie."""
