"""Password guessing, counted the way a reading room works: several readers share one
workstation, so a reader who mistypes locks only their own name at that address, while one
address guessing across many names is still stopped, at a looser limit."""

from axes.handlers.database import AxesDatabaseHandler
from django.conf import settings
from django.db.models import Sum


class UserAtAddressHandler(AxesDatabaseHandler):
    """Failures of one user name at one address count against KIDNEY_LOGIN_FAILURE_LIMIT;
    failures from one address, whatever the name, against KIDNEY_LOGIN_ADDRESS_FAILURE_LIMIT.
    A success clears the user's own failures at that address, never the others'.
    AXES_LOCKOUT_PARAMETERS lists the two, user at address first."""

    def get_failures(self, request, credentials=None) -> int:
        user_here, address = (
            attempts.aggregate(total=Sum("failures_since_start"))["total"] or 0
            for attempts in self.get_user_attempts(request, credentials)
        )
        # On the scale of the per-user limit, which is the one axes compares with.
        address_scaled = (
            address * settings.AXES_FAILURE_LIMIT // settings.KIDNEY_LOGIN_ADDRESS_FAILURE_LIMIT
        )
        return max(user_here, address_scaled)

    def reset_user_attempts(self, request, credentials=None) -> int:
        user_here = self.filter_user_attempts(request, credentials)[0]
        deleted, _ = user_here.delete()
        return deleted
