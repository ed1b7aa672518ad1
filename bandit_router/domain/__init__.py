"""The domain: requests, rewards, pricing and the records a decision leaves."""
