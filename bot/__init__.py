"""amlbot: a conversational assistant for machine-learning practitioners."""

__version__ = "0.1.0"
