"""Engines that run here without a vendor: the offline persona script behind an
OpenAI-compatible wire, the model files assembled from packages, the tokenizer.

The bottom layer beside `storage/`: it imports nothing of ours, so the domain
(post-call extraction on the offline LLM) and the pipeline can both use it.
"""
