"""Channel adapters: thin layers that turn a transport's updates into :class:`Message`s."""
