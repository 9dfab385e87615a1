"""The ML engineers' page: model versions and training runs, over the REST API."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import render

from accounts.roles import Role, user_has_role
from training.selectors import serving_model_version


@login_required
def models_page(request):
    """Model versions with their metrics, agreement and gate decisions; training runs with
    live progress, and a button that starts one."""
    if not user_has_role(request.user, Role.ML_ENGINEER):
        raise PermissionDenied("The models page is for ML engineers.")
    context = {
        "serving": serving_model_version(),
        "minimum_per_class": settings.KIDNEY_RECENT_EVALUATION_MIN_PER_CLASS,
    }
    return render(request, "retraining/models.html", context)
