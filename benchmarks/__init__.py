"""Performance scripts for Tokenometer itself (run them directly; they are not tests)."""
