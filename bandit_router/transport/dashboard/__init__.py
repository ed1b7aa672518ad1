"""The dashboard's web server and its static page."""
