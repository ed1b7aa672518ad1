"""The domain: requests, rewards, pricing, the records a decision leaves, and domain errors."""
