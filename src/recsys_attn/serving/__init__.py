"""Serving recommendations: exploration policies with logged propensities, and off-policy evaluation of logs."""
