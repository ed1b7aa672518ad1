"""The HTTP edge: the JSON API (Route, Reward, feedback, failures) and the OpenAI-compatible gateway."""
