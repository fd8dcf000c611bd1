"""Operator and developer tools: the demo and other one-shot commands."""
