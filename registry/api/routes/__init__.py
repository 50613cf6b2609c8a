"""Route modules: `native` (/v1) and the HuggingFace-compatible `hf_*` modules."""
