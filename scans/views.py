from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from accounts.permissions import allow
from accounts.roles import Role
from ml_core.images import ImageDecodeError
from scans import selectors, services
from scans.models import Scan
from scans.serializers import ScanAcceptedSerializer, ScanSerializer, ScanUploadSerializer


class UploadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "upload_too_large"


class ScanViewSet(
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.ListModelMixin,
    viewsets.GenericViewSet,
):
    """Upload CT slices and poll their predictions. Predictions support a radiologist's
    reading; they never replace it."""

    serializer_class = ScanSerializer
    parser_classes = [MultiPartParser]
    permission_classes = [
        allow(read=tuple(Role), write=(Role.CLINICIAN, Role.RADIOLOGIST)),
    ]

    def get_queryset(self):
        scans = selectors.scans_visible_to(self.request.user)
        if self.action != "list":
            return scans
        status_filter = self.request.query_params.get("status")
        if status_filter and status_filter not in Scan.Status.values:
            raise ValidationError({"status": f"Must be one of {', '.join(Scan.Status.values)}."})
        return selectors.scans_filtered(
            scans, status=status_filter, label=self.request.query_params.get("label")
        )

    @extend_schema(
        parameters=[
            OpenApiParameter("status", OpenApiTypes.STR, enum=Scan.Status.values),
            OpenApiParameter("label", OpenApiTypes.STR, description="Predicted label."),
        ]
    )
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(
        request={"multipart/form-data": ScanUploadSerializer},
        responses={202: ScanAcceptedSerializer},
    )
    def create(self, request, *args, **kwargs):
        upload = ScanUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        uploaded = upload.validated_data["file"]
        if uploaded.size > settings.KIDNEY_MAX_UPLOAD_BYTES:
            raise UploadTooLarge(
                f"The file has {uploaded.size} bytes; at most "
                f"{settings.KIDNEY_MAX_UPLOAD_BYTES} are accepted."
            )
        try:
            scan = services.scan_create(data=uploaded.read(), uploaded_by=request.user)
        except ImageDecodeError as error:
            raise ValidationError({"file": [str(error)]}) from None
        accepted = ScanAcceptedSerializer(scan, context={"request": request})
        return Response(accepted.data, status=status.HTTP_202_ACCEPTED)
