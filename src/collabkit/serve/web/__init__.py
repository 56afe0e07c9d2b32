"""The web pages: Jinja2 templates and static JS/CSS that only call the service's JSON API."""
