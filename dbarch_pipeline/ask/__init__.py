"""Ask the database in plain language.

corpus: the target's tables (from its catalog), documentation chunks and question-SQL examples,
embedded into pgvector; retrieve: the few tables and examples a question needs; answer: Gemini
writes one SELECT, which is validated and run read-only (without a key, the closest known pair,
labelled as such); explain: a query's plan in plain words.
"""
