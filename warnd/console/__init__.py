"""The duty-room console: server-rendered zh-CN pages (Jinja2 templates in templates/, CSS and
JS in static/, served by warnd itself — duty rooms are on closed networks, no CDN)."""
