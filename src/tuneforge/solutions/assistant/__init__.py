"""The customer-service assistant: intents, knowledge-base retrieval, extractive answers, human handover."""
