"""Gemini as a second opinion: the client, the prompts, and the validators that keep its SQL honest.

Nothing Gemini writes runs before sqlglot has checked it, and nothing it says sets a confidence:
only measurements do.
"""
