"""dbarch's memory: the OptimizationLog, the embedding cache and similarity search."""
