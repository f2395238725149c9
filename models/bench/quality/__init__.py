"""Quality of a model's output: perplexity and KL divergence as llama-perplexity measures them, and side-by-side answers."""
