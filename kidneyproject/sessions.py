"""Automatic logoff that the page's own polling cannot defeat."""

from django.contrib.sessions.middleware import SessionMiddleware
from django.utils.cache import patch_vary_headers

BACKGROUND_HEADER = "X-Background"


class IdleSessionMiddleware(SessionMiddleware):
    """Django's session middleware, except that a request the page makes on its own (polling
    for a heatmap, asking for the next one ahead; header `X-Background: 1`) does not extend
    the session: only what a person does restarts the idle time."""

    def process_response(self, request, response):
        if request.headers.get(BACKGROUND_HEADER) == "1":
            patch_vary_headers(response, ("Cookie",))
            return response
        return super().process_response(request, response)
