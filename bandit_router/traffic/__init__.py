"""Traffic as both sides read it: the logged-traffic format, its converters, drift scenarios and the outcome table."""
