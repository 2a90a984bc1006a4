"""provision: reconcile a YAML description of llama.cpp GPU clusters with AWS and Cloudflare."""

__version__ = "0.1.0"
