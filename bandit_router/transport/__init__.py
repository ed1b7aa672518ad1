"""Transports: the gRPC server and the dashboard's web server."""
