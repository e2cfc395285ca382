"""Item modality features: text encoders (MiniLM, hashed bag of tokens) and dense vectors."""
