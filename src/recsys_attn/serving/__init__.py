"""Serving: histories of new users, exploration policies with logged propensities, off-policy evaluation, export."""
