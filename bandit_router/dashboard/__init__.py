"""The live dashboard and Prometheus metrics, served by the router itself."""
