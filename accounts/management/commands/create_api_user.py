from django.conf import settings
from django.core.management.base import BaseCommand

from accounts.roles import Role
from accounts.services import api_user_upsert


class Command(BaseCommand):
    help = (
        "Create or update an API user in a role and print a fresh API token as the last line "
        "(valid for KIDNEY_TOKEN_DAYS; the user's other tokens keep working unless "
        "--revoke-others)."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=[str(role) for role in Role])
        parser.add_argument(
            "--organisation",
            help="Hospital or clinic (default: the user's current one, or "
            "KIDNEY_DEFAULT_ORGANISATION for a new user).",
        )
        parser.add_argument(
            "--revoke-others",
            action="store_true",
            help="Revoke the user's other tokens: rotation after a leak. (To end someone's "
            "access, deactivate the user in the admin: every token of theirs stops at once.)",
        )

    def handle(self, *args, username, role, organisation, revoke_others, **options):
        user, token = api_user_upsert(
            username=username,
            role=Role(role),
            organisation=organisation,
            revoke_others=revoke_others,
        )
        self.stderr.write(
            f"User {user.username!r} has the role {role} at {user.membership.organisation}. "
            f"A new API token, valid for {settings.KIDNEY_TOKEN_DAYS} days:"
        )
        self.stdout.write(token)
