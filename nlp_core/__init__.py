"""NLP components: text preparation, intent, tags, entities, duplicate search and chit-chat."""
