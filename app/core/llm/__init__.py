"""Language-model backends behind one Protocol, over one OpenAI-compatible client."""
