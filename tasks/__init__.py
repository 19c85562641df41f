"""Built-in tasks: one folder per task, a small factory plus jinja2 templates."""
