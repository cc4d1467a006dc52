"""Report templates (jinja2)."""
