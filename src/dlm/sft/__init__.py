"""Supervised fine-tuning on prompt/answer pairs (LLaDA's recipe for diffusion, answer-only
loss for AR): chat rendering and batches (``data``), the losses (``loss``)."""
