"""Model backends: Hugging Face transformers, mock, and plugins (vLLM, HTTP)."""
