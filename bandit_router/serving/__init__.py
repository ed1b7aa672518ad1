"""Serving: Route, Reward and expiry over the policy, the store and the learner."""
