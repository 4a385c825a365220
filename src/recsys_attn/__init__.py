"""recsys_attn: attention-based sequential recommenders on Lightning + Hydra."""

__version__ = "0.1.0"
