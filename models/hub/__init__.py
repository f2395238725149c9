"""The Hugging Face Hub: search, repo files, remote headers, verified downloads, the local library."""
