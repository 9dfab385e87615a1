from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from accounts.views import ApiTokenViewSet, session_status
from kidneyproject.health import healthz
from retraining.pages import models_page
from retraining.views import ModelVersionWithAgreementViewSet, TrainingRunViewSet
from scans.pages import review_page, studies_page, study_page
from scans.views import ReviewQueueView, ScanViewSet, StudyViewSet
from training.views import model_card

router = DefaultRouter()
router.register("scans", ScanViewSet, basename="scan")
router.register("studies", StudyViewSet, basename="study")
router.register("models", ModelVersionWithAgreementViewSet, basename="modelversion")
router.register("training-runs", TrainingRunViewSet, basename="trainingrun")
router.register("tokens", ApiTokenViewSet, basename="apitoken")

urlpatterns = [
    path("", RedirectView.as_view(url="/review/", permanent=False)),
    path("healthz", healthz, name="healthz"),
    path("model-card/", model_card, name="model-card"),
    path("review/", review_page, name="review"),
    path("review/studies/", studies_page, name="studies"),
    path("review/studies/<uuid:study_id>/", study_page, name="study"),
    path("models/", models_page, name="models"),
    path("accounts/session/", session_status, name="session-status"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("api/review-queue/", ReviewQueueView.as_view(), name="review-queue"),
    # A file name, so no trailing slash (the router would add one).
    path(
        "api/scans/<uuid:pk>/heatmap.png",
        ScanViewSet.as_view({"get": "heatmap"}),
        name="scan-heatmap",
    ),
    path("api/", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
]

handler400 = "kidneyproject.api_errors.bad_request"
handler404 = "kidneyproject.api_errors.not_found"
handler500 = "kidneyproject.api_errors.server_error"
