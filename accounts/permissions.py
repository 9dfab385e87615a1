"""DRF permissions by role: a view names the roles allowed for each kind of request."""

from rest_framework.permissions import SAFE_METHODS, BasePermission

from accounts.roles import Role, user_has_role


class RolePermission(BasePermission):
    """Allows reads to `read_roles` and writes to `write_roles` (superusers always)."""

    read_roles: tuple[Role, ...] = tuple(Role)
    write_roles: tuple[Role, ...] = ()

    def has_permission(self, request, view) -> bool:
        roles = self.read_roles if request.method in SAFE_METHODS else self.write_roles
        return user_has_role(request.user, *roles)


def allow(*, read: tuple[Role, ...], write: tuple[Role, ...] = ()) -> type[RolePermission]:
    return type("AllowedRoles", (RolePermission,), {"read_roles": read, "write_roles": write})
