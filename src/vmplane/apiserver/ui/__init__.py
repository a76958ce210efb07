"""The web console at ``/ui/``: its page and assets, and the sessions that sign a browser in."""

from vmplane.apiserver.ui.routes import UI_PREFIX, add_ui_routes, is_console_path
from vmplane.apiserver.ui.sessions import SessionStore

__all__ = ["UI_PREFIX", "SessionStore", "add_ui_routes", "is_console_path"]
