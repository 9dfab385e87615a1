from django.conf import settings
from django.http import FileResponse, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiRequest, extend_schema
from rest_framework import generics, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle

from accounts.permissions import allow
from accounts.roles import Role
from audit.models import AccessEvent
from audit.services import access_record
from kidneyproject.api_requests import ObjectJSONParser
from kidneyproject.openapi import ErrorSerializer
from ml_core.dicom import CONTENT_TYPE as DICOM_CONTENT_TYPE
from ml_core.dicom import WINDOW_PRESETS
from ml_core.errors import ImageDecodeError, UnsupportedEncoding
from ml_core.images import intensity_png
from scans import selectors, services
from scans.images import stored_image
from scans.models import Scan, Study
from scans.serializers import (
    ReviewEventSerializer,
    ReviewQueueFilterSerializer,
    ReviewQueueItemSerializer,
    ReviewRequestSerializer,
    ReviewUndoSerializer,
    ScanAcceptedSerializer,
    ScanFilterSerializer,
    ScanSerializer,
    ScanUploadSerializer,
    StudyDetailSerializer,
    StudyReviewSerializer,
    StudySerializer,
)

RADIOLOGISTS = allow(read=(Role.RADIOLOGIST,), write=(Role.RADIOLOGIST,))


def stale_review_response(stale: services.StaleReview) -> Response:
    """409 with the review version now stored: read again, then decide."""
    return Response(
        {"detail": str(stale), "review_version": stale.current_version},
        status=status.HTTP_409_CONFLICT,
    )


class UploadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "upload_too_large"


class UnsupportedUpload(APIException):
    status_code = status.HTTP_415_UNSUPPORTED_MEDIA_TYPE
    default_code = "unsupported_encoding"


class UploadRateThrottle(UserRateThrottle):
    """Uploads per user, at KIDNEY_UPLOAD_RATE (read per request, so it is a live setting)."""

    scope = "upload"

    def get_rate(self) -> str:
        return settings.KIDNEY_UPLOAD_RATE


# What an upload's file may be, as the schema tells clients (the service reads the bytes, not
# the part's declared type).
UPLOAD_CONTENT_TYPES = f"image/png, image/jpeg, {DICOM_CONTENT_TYPE}"
# Room for the multipart boundaries and headers around the file.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


def audited(request, response, kind: str | None, scan_id=None):
    """Records a successful read (200) in the access audit: one row per request, naming the
    scans it showed. A refused or pending read (4xx, 202) records nothing."""
    if kind is None or response.status_code != status.HTTP_200_OK:
        return
    if kind == AccessEvent.Kind.LIST:
        scan_ids = [item["id"] for item in response.data.get("results", [])]
    else:
        scan_ids = [scan_id]
    if scan_ids:
        access_record(request, kind=kind, scan_ids=scan_ids)


class SameImageInOneQuery:
    """A list of scans reads every item's same_image_reviews in one query, not one each."""

    def get_serializer(self, *args, **kwargs):
        if kwargs.get("many"):
            scans = list(args[0])
            context = kwargs.setdefault("context", self.get_serializer_context())
            context["same_image"] = same_image_context(self.request, scans)
            args = (scans, *args[1:])
        return super().get_serializer(*args, **kwargs)


def same_image_context(request, scans) -> dict:
    return selectors.same_image_reviews(scans, selectors.scans_visible_to(request.user))


class ScanViewSet(
    SameImageInOneQuery,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.ListModelMixin,
    viewsets.GenericViewSet,
):
    """Upload CT slices and poll their predictions. Predictions support a radiologist's
    reading; they never replace it."""

    serializer_class = ScanSerializer
    parser_classes = [MultiPartParser]
    conflicts = {
        "review": "Another review of this scan came first: read it again, then decide.",
        "undo_review": "Another review of this scan came first (read it again, then decide), "
        "or the scan has no review to undo.",
    }
    upload_actions = {"create"}
    permission_classes = [
        allow(read=tuple(Role), write=(Role.CLINICIAN, Role.RADIOLOGIST)),
    ]

    # The reads the access audit records; the upload of bytes already stored answers with the
    # scan's record, so it is a read too.
    audited_reads = {
        "retrieve": AccessEvent.Kind.RECORD,
        "create": AccessEvent.Kind.RECORD,
        "list": AccessEvent.Kind.LIST,
        "image": AccessEvent.Kind.IMAGE,
        "heatmap": AccessEvent.Kind.HEATMAP,
        "reviews": AccessEvent.Kind.REVIEW_TRAIL,
    }

    def get_throttles(self):
        return [UploadRateThrottle()] if self.action == "create" else super().get_throttles()

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        scan_id = self.kwargs.get("pk")
        if self.action == "create" and isinstance(getattr(response, "data", None), dict):
            scan_id = response.data.get("id")
        audited(request, response, self.audited_reads.get(self.action), scan_id)
        return response

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # the OpenAPI schema has no user
            return Scan.objects.none()
        scans = selectors.scans_visible_to(self.request.user)
        if self.action != "list":
            return scans
        filters = ScanFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return selectors.scans_filtered(scans, **filters.validated_data)

    @extend_schema(parameters=[ScanFilterSerializer])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(
        request={
            "multipart/form-data": OpenApiRequest(
                ScanUploadSerializer, encoding={"file": {"contentType": UPLOAD_CONTENT_TYPES}}
            )
        },
        responses={202: ScanAcceptedSerializer, 200: ScanSerializer},
    )
    def create(self, request, *args, **kwargs):
        """Upload one slice: 202 and the new scan, or 200 and the scan already stored when
        you uploaded the same bytes before (it is not classified twice)."""
        limit = settings.KIDNEY_MAX_UPLOAD_BYTES
        # Refused from the header, before the body is read.
        if int(request.META.get("CONTENT_LENGTH") or 0) > limit + MULTIPART_OVERHEAD_BYTES:
            raise UploadTooLarge(f"The upload is too large; at most {limit} bytes are accepted.")
        upload = ScanUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        uploaded = upload.validated_data["file"]
        if uploaded.size > limit:
            raise UploadTooLarge(
                f"The file has {uploaded.size} bytes; at most {limit} are accepted."
            )
        try:
            scan, created = services.scan_create(
                data=uploaded.read(),
                uploaded_by=request.user,
                frame=upload.validated_data.get("frame"),
            )
        except UnsupportedEncoding as error:
            raise UnsupportedUpload(str(error)) from None
        except ImageDecodeError as error:
            raise ValidationError({"file": [str(error)]}) from None
        if not created:
            return Response(ScanSerializer(scan, context={"request": request}).data)
        accepted = ScanAcceptedSerializer(scan, context={"request": request})
        return Response(accepted.data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=ReviewRequestSerializer, responses={200: ReviewEventSerializer})
    @action(
        detail=True,
        methods=["post"],
        permission_classes=[RADIOLOGISTS],
        parser_classes=[ObjectJSONParser],
    )
    def review(self, request, pk=None):
        """Confirm or relabel: send the label, a note and the review_version you read."""
        scan = self.get_object()
        body = ReviewRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            event = services.scan_review(
                scan_id=scan.pk,
                reviewer=request.user,
                label=body.validated_data["label"],
                note=body.validated_data["note"],
                read_version=body.validated_data["version"],
            )
        except services.StaleReview as stale:
            return stale_review_response(stale)
        except services.UnknownLabel as unknown:
            raise ValidationError({"label": [str(unknown)]}) from None
        return Response(ReviewEventSerializer(event, context={"request": request}).data)

    @extend_schema(request=ReviewUndoSerializer, responses={200: ReviewEventSerializer})
    @action(
        detail=True,
        methods=["post"],
        url_path="undo-review",
        permission_classes=[RADIOLOGISTS],
        parser_classes=[ObjectJSONParser],
    )
    def undo_review(self, request, pk=None):
        """Undo the scan's last review: a new review event puts back the label it had before
        (unreviewed: back in the queue). Send the review_version you read."""
        scan = self.get_object()
        body = ReviewUndoSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            event = services.scan_review_undo(
                scan_id=scan.pk, reviewer=request.user, read_version=body.validated_data["version"]
            )
        except services.StaleReview as stale:
            return stale_review_response(stale)
        except services.NothingToUndo as nothing:
            return Response({"detail": str(nothing)}, status=status.HTTP_409_CONFLICT)
        return Response(ReviewEventSerializer(event, context={"request": request}).data)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "window",
                enum=sorted(WINDOW_PRESETS),
                description="For a DICOM slice: the CT window it is rendered through "
                "(default soft_tissue).",
            )
        ],
        responses={(200, "image/*"): OpenApiTypes.BINARY, 400: ErrorSerializer},
    )
    @action(detail=True, methods=["get"])
    def image(self, request, pk=None):
        """The image for viewing: a PNG or JPEG as stored; a DICOM slice rendered as PNG
        through a CT window (`window`: soft_tissue, the default, or bone)."""
        scan = self.get_object()
        preset = request.query_params.get("window", "soft_tissue")
        if preset not in WINDOW_PRESETS:
            raise ValidationError({"window": [f"One of: {', '.join(sorted(WINDOW_PRESETS))}."]})
        if scan.content_type != DICOM_CONTENT_TYPE:
            return FileResponse(scan.file.open("rb"), content_type=scan.content_type)
        pixels = stored_image(scan, window=WINDOW_PRESETS[preset]).pixels
        return HttpResponse(intensity_png(pixels), content_type="image/png")

    @extend_schema(responses={(200, "image/png"): OpenApiTypes.BINARY, 202: None, 404: None})
    # Routed in kidneyproject/urls.py: a file name takes no trailing slash, which the router
    # would add.
    def heatmap(self, request, pk=None):
        """The evidence map's overlay (RGBA PNG, the scan's size; its alpha grows with the
        map's value): where the evidence for "abnormal" lies, by occlusion. Headers:
        X-Heatmap-Method (the method and version that made it), X-Heatmap-Signal (`none`
        when no region carries the score). 202 while it is being computed; ask again."""
        scan = self.get_object()
        prediction = getattr(scan, "prediction", None)
        if prediction is None:
            raise NotFound("The scan has no prediction yet.")
        if prediction.evidence_map_ready:
            response = FileResponse(prediction.heatmap.open("rb"), content_type="image/png")
            # The page says so when the overlay is empty, rather than show nothing silently.
            response["X-Heatmap-Signal"] = "none" if prediction.heatmap_signal is False else "yes"
            response["X-Heatmap-Method"] = prediction.heatmap_method
            return response
        services.heatmap_request(prediction=prediction)
        return Response(
            {"detail": "The evidence map is being computed; ask again shortly."},
            status=status.HTTP_202_ACCEPTED,
        )

    @extend_schema(responses={200: ReviewEventSerializer(many=True)})
    @action(detail=True, methods=["get"], pagination_class=None)
    def reviews(self, request, pk=None):
        """Every review of this scan, newest first: the audit trail."""
        scan = self.get_object()
        events = scan.review_events.select_related("reviewer", "model_version")
        context = {"request": request, "same_image": same_image_context(request, [scan])}
        return Response(ReviewEventSerializer(events, many=True, context=context).data)


class ReviewQueueView(SameImageInOneQuery, generics.ListAPIView):
    """Predicted scans awaiting review, the most uncertain first; `positive` flags the ones
    the model called abnormal. Filters: `positive` (true: flagged only), `model_version`,
    `since` (a date: predicted on or after it). `reviewed_today` counts the caller's reviews
    since midnight (server time), for a reader's progress."""

    serializer_class = ReviewQueueItemSerializer
    permission_classes = [RADIOLOGISTS]

    @extend_schema(parameters=[ReviewQueueFilterSerializer])
    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)
        response.data["reviewed_today"] = selectors.reviews_today(request.user)
        return response

    def get_queryset(self):
        filters = ReviewQueueFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return selectors.review_queue(**filters.validated_data)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        audited(request, response, AccessEvent.Kind.LIST)
        return response


class StudyViewSet(mixins.RetrieveModelMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    """CT studies received over DICOM, newest first, each with one verdict by the study rule
    and its key slices. Verdicts support a radiologist's reading; they never replace it."""

    permission_classes = [allow(read=tuple(Role), write=(Role.RADIOLOGIST,))]
    conflicts = {
        "review": "Another review of this study came first (read it again, then decide), or "
        "the study is not triaged yet.",
    }

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # the OpenAPI schema has no user
            return Study.objects.none()
        return selectors.studies_visible_to(self.request.user)

    def get_serializer_class(self):
        return StudySerializer if self.action == "list" else StudyDetailSerializer

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if response.status_code == status.HTTP_200_OK and self.action == "retrieve":
            slice_ids = [item["scan"] for item in response.data.get("slice_list", [])]
            if slice_ids:
                access_record(request, kind=AccessEvent.Kind.RECORD, scan_ids=slice_ids)
        elif response.status_code == status.HTTP_200_OK and self.action == "list":
            key_ids = [k for item in response.data.get("results", []) for k in item["key_slices"]]
            if key_ids:
                access_record(request, kind=AccessEvent.Kind.LIST, scan_ids=key_ids)
        return response

    @extend_schema(request=StudyReviewSerializer, responses={200: StudyDetailSerializer})
    @action(detail=True, methods=["post"])
    def review(self, request, pk=None):
        """Confirm or correct the verdict: normal labels every slice normal; an abnormal
        verdict labels the `stone_slices` you mark. Send the review_version you read."""
        study = self.get_object()
        body = StudyReviewSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            study = services.study_review(
                study_id=study.pk,
                reviewer=request.user,
                verdict=body.validated_data["verdict"],
                stone_slices=body.validated_data["stone_slices"],
                note=body.validated_data["note"],
                read_version=body.validated_data["version"],
            )
        except services.StaleReview as stale:
            return stale_review_response(stale)
        except services.StudyNotTriaged as not_yet:
            return Response({"detail": str(not_yet)}, status=status.HTTP_409_CONFLICT)
        except (services.UnknownLabel, services.StudyNotReviewable) as refused:
            raise ValidationError({"detail": str(refused)}) from None
        study = self.get_queryset().get(pk=study.pk)
        return Response(StudyDetailSerializer(study, context={"request": request}).data)
