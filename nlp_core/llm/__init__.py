"""A local instruction model that writes short answers grounded in found threads, and
chit-chat replies in the bot's persona (see docs/llm.md)."""
