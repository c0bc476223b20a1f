"""Models: vision towers, connectors, language models and the assembled vision-language model."""
