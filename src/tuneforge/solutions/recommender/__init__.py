"""The text recommender: two-tower retrieval, re-ranking, collaborative signals, cold start from text."""
