from rest_framework import viewsets

from accounts.permissions import allow
from accounts.roles import Role
from training.models import ModelVersion
from training.serializers import ModelVersionSerializer


class ModelVersionViewSet(viewsets.ReadOnlyModelViewSet):
    """Model versions, newest first, with their threshold and validation metrics."""

    queryset = ModelVersion.objects.all()
    serializer_class = ModelVersionSerializer
    permission_classes = [allow(read=tuple(Role))]
