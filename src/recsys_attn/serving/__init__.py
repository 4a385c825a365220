"""Serving: histories of new users, exploration policies, off-policy evaluation."""
