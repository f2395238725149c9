"""The results store, comparisons, cost and reports."""
