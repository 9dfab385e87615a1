"""Settings: every value comes from an environment variable with an embedded default.

The embedded default needs no server: SQLite, Celery's filesystem transport and local media,
all under KIDNEY_DATA_DIR. Production sets DATABASE_URL, CELERY_BROKER_URL and the rest
(see docker-compose.yml). Nothing outside this module reads the environment.
"""

import json
import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from ml_core.shipped import SHIPPED_MODEL_DIR

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    return env(name, "1" if default else "0").strip().lower() in ("1", "true", "yes", "on")


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


DATA_DIR = Path(env("KIDNEY_DATA_DIR", str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _embedded_secret(name: str) -> str:
    """A random key kept in the data folder, so no secret is ever a constant in the code.
    Created by a hard link from a complete temporary file: concurrent first starts agree."""
    key_file = DATA_DIR / name
    if not key_file.exists():
        draft = DATA_DIR / f".{name}.{os.getpid()}"
        draft.touch(mode=0o600)
        draft.write_text(secrets.token_urlsafe(50))
        try:
            os.link(draft, key_file)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return key_file.read_text().strip()


# "production" refuses unsafe settings and turns on HTTPS-only cookies, redirects and HSTS.
PRODUCTION = env("DJANGO_ENV", "development") == "production"
SECRET_KEY = env("DJANGO_SECRET_KEY", "") or ("" if PRODUCTION else _embedded_secret("secret_key"))
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")
MIN_SECRET_KEY_LENGTH = 50


def _refuse_unsafe_production_settings() -> None:
    problems = []
    if DEBUG:
        problems.append("DJANGO_DEBUG must be off: debug pages show settings and data.")
    if not SECRET_KEY:
        problems.append("DJANGO_SECRET_KEY must be set (a random value of 50+ characters).")
    elif (
        len(SECRET_KEY) < MIN_SECRET_KEY_LENGTH
        or len(set(SECRET_KEY)) < 5
        or SECRET_KEY.startswith("django-insecure")
    ):
        problems.append(
            "DJANGO_SECRET_KEY is weak or a default: use a random value of 50+ characters, "
            'e.g. python -c "import secrets; print(secrets.token_urlsafe(50))".'
        )
    if not ALLOWED_HOSTS or "*" in ALLOWED_HOSTS:
        problems.append("DJANGO_ALLOWED_HOSTS must name this service's host names.")
    if problems:
        raise ImproperlyConfigured(
            "Refusing to start with DJANGO_ENV=production:\n  " + "\n  ".join(problems)
        )


if PRODUCTION:
    _refuse_unsafe_production_settings()
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    # Load balancers probe plain HTTP inside the network.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    if env_bool("DJANGO_TRUST_X_FORWARDED_PROTO", False):
        # Only behind a TLS proxy that sets this header itself.
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(env("DJANGO_HSTS_SECONDS", str(365 * 24 * 3600)))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", True)
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "kidneyproject",
    "accounts",
    "training",
    "scans",
    "retraining",
    "gateway",
    "audit",
    # Last, as its documentation asks: it wraps the authentication backends.
    "axes",
]

MIDDLEWARE = [
    "kidneyproject.middleware.DatabaseUnavailableMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "kidneyproject.sessions.IdleSessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: answers a locked-out login attempt with 429 before any view sees it.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "kidneyproject.urls"
WSGI_APPLICATION = "kidneyproject.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "kidneyproject.context_processors.session_idle",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{DATA_DIR / 'kidney.sqlite3'}"),
        conn_max_age=int(env("DATABASE_CONN_MAX_AGE", "60")),
        # A kept connection is checked before reuse: after a database restart, requests
        # reconnect instead of failing on a dead socket.
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share the file: wait for locks instead of failing at once.
    DATABASES["default"]["OPTIONS"] = {"timeout": 30, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TZ_NAME", "UTC")
USE_I18N = True
USE_TZ = True

LOGIN_URL = "/accounts/login/"
# Access controls (docs/security.md). A session ends after this long without a request, and
# when the browser closes; the review page warns a few minutes before.
KIDNEY_SESSION_IDLE_MINUTES = float(env("KIDNEY_SESSION_IDLE_MINUTES", "30"))
SESSION_COOKIE_AGE = max(1, round(KIDNEY_SESSION_IDLE_MINUTES * 60))
SESSION_SAVE_EVERY_REQUEST = True
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
# API tokens expire this many days after they are issued.
KIDNEY_TOKEN_DAYS = int(env("KIDNEY_TOKEN_DAYS", "90"))
# Behind this many reverse proxies that each append to X-Forwarded-For, the client's address
# is that many entries from the right; 0: the connection's address (REMOTE_ADDR).
KIDNEY_TRUSTED_PROXY_COUNT = int(env("KIDNEY_TRUSTED_PROXY_COUNT", "0"))
# Password guessing (django-axes): after this many failures of one user name at one client
# address, that name is refused there (429) for the cool-off time, and other readers at the
# same workstation are not; an address failing this many times across names is refused for
# everyone (kidneyproject.login_throttle). Staff lift a lockout early in the admin (Axes:
# access attempts) or with `manage.py axes_reset_username` / `axes_reset_ip`.
AXES_FAILURE_LIMIT = int(env("KIDNEY_LOGIN_FAILURE_LIMIT", "5"))
KIDNEY_LOGIN_ADDRESS_FAILURE_LIMIT = int(env("KIDNEY_LOGIN_ADDRESS_FAILURE_LIMIT", "30"))
AXES_COOLOFF_TIME = timedelta(minutes=float(env("KIDNEY_LOGIN_LOCKOUT_MINUTES", "15")))
# In this order: kidneyproject.login_throttle counts them apart.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], ["ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "kidneyproject.client.client_address"
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_ENABLE_ACCESS_FAILURE_LOG = True
# The log names the account and the address of each failure and lockout, so that whoever
# watches it can act; the password is always masked.
AXES_SENSITIVE_PARAMETERS = []
# Failures are counted in the database, which every web process shares, on the embedded
# default and in production alike (a per-process cache would let each process count apart).
AXES_HANDLER = "kidneyproject.login_throttle.UserAtAddressHandler"
# Reads of scans, images, heatmaps and review trails are kept this long in the access audit.
KIDNEY_AUDIT_RETENTION_DAYS = int(env("KIDNEY_AUDIT_RETENTION_DAYS", str(6 * 365)))
LOGIN_REDIRECT_URL = "/review/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
WHITENOISE_USE_FINDERS = True
MEDIA_ROOT = DATA_DIR / "media"
# Scans, heatmaps, model artifacts and training manifests: every process reads and writes them
# through Django's storage API, so workers on other machines share them through an
# S3-compatible store (django-storages; see README, "Production"). Options are JSON.
KIDNEY_STORAGE_BACKEND = env(
    "KIDNEY_STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage"
)
KIDNEY_STORAGE_OPTIONS = json.loads(env("KIDNEY_STORAGE_OPTIONS", "") or "{}")
STORAGES = {
    "default": {"BACKEND": KIDNEY_STORAGE_BACKEND, "OPTIONS": KIDNEY_STORAGE_OPTIONS},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.tokens.ExpiringTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "kidneyproject.api_requests.PageNumbers",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "kidneyproject.openapi.DocumentedErrorsSchema",
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "kidneyproject.api_errors.api_exception_handler",
    # JSON bodies only; the upload alone is multipart (scans.views).
    "DEFAULT_PARSER_CLASSES": ["kidneyproject.api_requests.ObjectJSONParser"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Kidney CT triage API",
    "DESCRIPTION": (
        "Upload kidney CT slices and poll for the model's prediction. Predictions support a "
        "radiologist's reading; they never replace it."
    ),
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Request bodies get components of their own, so an upload's file is `format: binary`
    # (a response would show it as a URL).
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "ScanStatusEnum": "scans.models.Scan.Status",
        "ModelVersionStatusEnum": "training.models.ModelVersion.Status",
        "TrainingRunStatusEnum": "training.models.TrainingRun.Status",
        "StudyStatusEnum": "scans.models.Study.Status",
        "LabelEnum": "django.conf.settings.KIDNEY_CLASSES",
    },
}

# Shared by the web processes for upload throttling: Redis in production (KIDNEY_CACHE_URL),
# else per process.
KIDNEY_CACHE_URL = env("KIDNEY_CACHE_URL", "")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": KIDNEY_CACHE_URL,
    }
    if KIDNEY_CACHE_URL
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}

# Celery: Redis when CELERY_BROKER_URL is set, else the filesystem transport in the data folder.
BROKER_DIR = DATA_DIR / "broker"
CELERY_BROKER_URL = env("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    for folder in ("queue", "processed", "control"):
        (BROKER_DIR / folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = TIME_ZONE

# The service's own settings.
KIDNEY_DEFAULT_ORGANISATION = env("KIDNEY_DEFAULT_ORGANISATION", "Default hospital")
# Local copies of what lives in storage, per machine: Keras and the image loaders need files.
KIDNEY_MODEL_CACHE_DIR = DATA_DIR / "model-cache"
KIDNEY_IMAGE_CACHE_DIR = DATA_DIR / "image-cache"
KIDNEY_MAX_IMAGE_PIXELS = int(env("KIDNEY_MAX_IMAGE_PIXELS", str(6000 * 6000)))
KIDNEY_MAX_UPLOAD_BYTES = int(env("KIDNEY_MAX_UPLOAD_BYTES", str(64 * 1024 * 1024)))
# Uploads per user, e.g. "120/minute": a runaway script cannot flood the workers.
KIDNEY_UPLOAD_RATE = env("KIDNEY_UPLOAD_RATE", "120/minute")
KIDNEY_MIN_IMAGE_SIDE = int(env("KIDNEY_MIN_IMAGE_SIDE", "32"))
KIDNEY_INFERENCE_BATCH_SIZE = int(env("KIDNEY_INFERENCE_BATCH_SIZE", "16"))
# auto: bfloat16 on CPUs with native bfloat16, float16 on GPUs, else float32; "float32" turns
# reduced precision off (ml_core/precision.py; what it changes: docs/benchmarks.md).
KIDNEY_INFERENCE_PRECISION = env("KIDNEY_INFERENCE_PRECISION", "auto")
# What computes predictions on a CPU: "keras" (in KIDNEY_INFERENCE_PRECISION), "openvino-int8"
# (the serving version's int8 twin wherever one passed its gate, Keras otherwise) or "auto"
# (the twin where one passed and it ran faster than Keras on a few batches when the worker
# loaded the model). GPUs keep Keras. Evidence maps always come from the Keras model.
KIDNEY_INFERENCE_RUNTIME = env("KIDNEY_INFERENCE_RUNTIME", "auto")
if KIDNEY_INFERENCE_RUNTIME not in ("auto", "keras", "openvino-int8"):
    raise ImproperlyConfigured("KIDNEY_INFERENCE_RUNTIME must be auto, keras or openvino-int8.")
# Build an int8 twin for each version a training run registers (training.twins), on the
# training queue after the run: "1" or "0".
KIDNEY_INT8_TWINS = env("KIDNEY_INT8_TWINS", "1") == "1"
# The sweep re-sends scans queued longer than this, and releases claims older than the timeout.
KIDNEY_REQUEUE_QUEUED_AFTER_SECONDS = int(env("KIDNEY_REQUEUE_QUEUED_AFTER_SECONDS", "120"))
KIDNEY_CLAIM_TIMEOUT_SECONDS = int(env("KIDNEY_CLAIM_TIMEOUT_SECONDS", "900"))
# A scan whose file cannot be read is retried after KIDNEY_SCAN_RETRY_SECONDS, doubling each
# time, and fails at its KIDNEY_SCAN_MAX_ATTEMPTS-th attempt; so does one whose worker dies
# every time it is processed.
KIDNEY_SCAN_MAX_ATTEMPTS = int(env("KIDNEY_SCAN_MAX_ATTEMPTS", "3"))
KIDNEY_SCAN_RETRY_SECONDS = float(env("KIDNEY_SCAN_RETRY_SECONDS", "2"))
# Evidence maps (ml_core.evidence: occlusion sensitivity, 225 forward passes a slice):
# "on_request" (each on its first GET; the review page asks for the next scan's while the
# current one is read), "flagged" (queued once the prediction is stored, for scans flagged
# abnormal or within KIDNEY_EVIDENCE_MARGIN of the threshold; the others on their first GET)
# or "always" (queued for every scan). A prediction never waits for its map; a study's key
# slices get theirs before the study is triaged. KIDNEY_GRADCAM and KIDNEY_GRADCAM_MARGIN,
# the names of the Grad-CAM release, are still read when the new ones are unset.
KIDNEY_EVIDENCE_MAPS = env("KIDNEY_EVIDENCE_MAPS", env("KIDNEY_GRADCAM", "on_request"))
KIDNEY_EVIDENCE_MARGIN = float(env("KIDNEY_EVIDENCE_MARGIN", env("KIDNEY_GRADCAM_MARGIN", "0.1")))
if KIDNEY_EVIDENCE_MAPS not in ("on_request", "flagged", "always"):
    raise ImproperlyConfigured("KIDNEY_EVIDENCE_MAPS must be on_request, flagged or always.")
# Test-only: a worker that claimed a batch writes this file and waits to be killed, so a fault
# test kills it inside a batch deterministically. Empty (the default) in every deployment.
KIDNEY_TEST_HOLD_BATCH_FILE = env("KIDNEY_TEST_HOLD_BATCH_FILE", "")
# Keys the hash that replaces DICOM study UIDs. Changing it splits old and new slices of a
# study into different groups, so set it once per deployment and keep it.
KIDNEY_STUDY_HASH_KEY = env("KIDNEY_STUDY_HASH_KEY", "") or _embedded_secret("study_hash_key")
KIDNEY_TARGET_SENSITIVITY = float(env("KIDNEY_TARGET_SENSITIVITY", "0.95"))

# The DICOM gateway (manage.py dicom_gateway; README, "Hospital integration"). Port 0 turns
# the listener off. Callers: comma-separated AE titles, each optionally AE=organisation; with
# none named, any caller is accepted, and only while the listener is on loopback.
KIDNEY_DICOM_PORT = int(env("KIDNEY_DICOM_PORT", "11112"))
KIDNEY_DICOM_HOST = env("KIDNEY_DICOM_HOST", "127.0.0.1")
KIDNEY_DICOM_AE_TITLE = env("KIDNEY_DICOM_AE_TITLE", "KIDNEY")
KIDNEY_DICOM_CALLING_AE_TITLES = env_list("KIDNEY_DICOM_CALLING_AE_TITLES", "")
# A study is complete when no instance of it arrived for this long.
KIDNEY_DICOM_STUDY_QUIET_SECONDS = float(env("KIDNEY_DICOM_STUDY_QUIET_SECONDS", "10"))
# Where results go, AE@host:port (empty: nowhere). A failed send is tried again after
# KIDNEY_DICOM_RETRY_SECONDS, doubling up to KIDNEY_DICOM_RETRY_MAX_SECONDS, until delivered.
KIDNEY_DICOM_DESTINATION = env("KIDNEY_DICOM_DESTINATION", "")
KIDNEY_DICOM_RETRY_SECONDS = float(env("KIDNEY_DICOM_RETRY_SECONDS", "5"))
KIDNEY_DICOM_RETRY_MAX_SECONDS = float(env("KIDNEY_DICOM_RETRY_MAX_SECONDS", "600"))
KIDNEY_DICOM_POLL_SECONDS = float(env("KIDNEY_DICOM_POLL_SECONDS", "1"))
# The identifiers results need (patient, study, original UIDs) are encrypted with this key and
# erased this long after the results are delivered (or after triage, with no destination).
KIDNEY_DICOM_IDENTITY_KEY = env("KIDNEY_DICOM_IDENTITY_KEY", "") or _embedded_secret(
    "dicom_identity_key"
)
KIDNEY_DICOM_IDENTITY_RETENTION_HOURS = float(env("KIDNEY_DICOM_IDENTITY_RETENTION_HOURS", "24"))
# The trained model that ships with the code (docs/model-card.md): bootstrap_model serves it
# as the first version; where the folder holds none, it trains the phantom placeholder.
KIDNEY_SHIPPED_MODEL_DIR = Path(env("KIDNEY_SHIPPED_MODEL_DIR", str(SHIPPED_MODEL_DIR)))

# MLflow: a sqlite store in the data folder by default, a tracking server in production.
MLFLOW_TRACKING_URI = env("MLFLOW_TRACKING_URI", f"sqlite:///{DATA_DIR / 'mlflow.db'}")
MLFLOW_ARTIFACT_LOCATION = env("MLFLOW_ARTIFACT_LOCATION", str(DATA_DIR / "mlartifacts"))
MLFLOW_EXPERIMENT_NAME = env("MLFLOW_EXPERIMENT_NAME", "kidney-ct-training")
# The model registry: the tracking store unless set apart.
MLFLOW_REGISTRY_URI = env("MLFLOW_REGISTRY_URI", "") or MLFLOW_TRACKING_URI
# An MLflow server that does not answer costs at most about this long per call, so serving
# changes (which only warn when MLflow is down) answer promptly.
MLFLOW_HTTP_REQUEST_MAX_RETRIES = env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
MLFLOW_HTTP_REQUEST_TIMEOUT = env("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")

# Training and the promotion gate.
KIDNEY_CLASSES = env_list("KIDNEY_CLASSES", "normal,stone")
KIDNEY_FEATURE_CACHE_DIR = DATA_DIR / "feature-cache"
KIDNEY_VALIDATION_FRACTION = float(env("KIDNEY_VALIDATION_FRACTION", "0.15"))
KIDNEY_EVALUATION_FRACTION = float(env("KIDNEY_EVALUATION_FRACTION", "0.2"))
KIDNEY_SPLIT_GAP = int(env("KIDNEY_SPLIT_GAP", "5"))
KIDNEY_RETRAIN_MIN_NEW_LABELS = int(env("KIDNEY_RETRAIN_MIN_NEW_LABELS", "50"))
# Overrides of the retraining recipe (ml_core.recipes.RETRAIN) as JSON, e.g.
# {"mode": "finetune", "learning_rate": 1e-4, "epochs": 8}; checked when a run is requested.
KIDNEY_RETRAIN_PARAMETERS = json.loads(env("KIDNEY_RETRAIN_PARAMETERS", "") or "{}")
# Retraining on confirmed labels holds their newest block out (this fraction of each class, in
# acquisition order, after KIDNEY_SPLIT_GAP): it judges the run's candidate against the
# serving version, next to the original evaluation set, once it has this many images of
# normal and of abnormal.
KIDNEY_RECENT_EVALUATION_FRACTION = float(env("KIDNEY_RECENT_EVALUATION_FRACTION", "0.2"))
KIDNEY_RECENT_EVALUATION_MIN_PER_CLASS = int(env("KIDNEY_RECENT_EVALUATION_MIN_PER_CLASS", "20"))
# The original evaluation set is the permanent benchmark: it is frozen only once the last
# block holds at least this many images of each class; until then the gate does not judge.
KIDNEY_EVALUATION_MIN_PER_CLASS = int(env("KIDNEY_EVALUATION_MIN_PER_CLASS", "50"))
# A model version's agreement on the newest confirmed scans it predicted (drift, in the API
# and admin) counts this many.
KIDNEY_RECENT_AGREEMENT_WINDOW = int(env("KIDNEY_RECENT_AGREEMENT_WINDOW", "200"))
KIDNEY_PROMOTION_SENSITIVITY_FLOOR = float(env("KIDNEY_PROMOTION_SENSITIVITY_FLOOR", "0.95"))
# A candidate must also leave at least this share of normal scans unflagged on each set.
KIDNEY_PROMOTION_SPECIFICITY_FLOOR = float(env("KIDNEY_PROMOTION_SPECIFICITY_FLOOR", "0.5"))
KIDNEY_PROMOTION_AUC_MARGIN = float(env("KIDNEY_PROMOTION_AUC_MARGIN", "0.01"))
# On the recent block (the newest studies), a candidate that ranks them worse than the
# serving version does not serve, by however little.
KIDNEY_PROMOTION_RECENT_AUC_MARGIN = float(env("KIDNEY_PROMOTION_RECENT_AUC_MARGIN", "0.0"))
KIDNEY_PROMOTION_MIN_AUC = float(env("KIDNEY_PROMOTION_MIN_AUC", "0.8"))
# After this many candidates in a row kept out by the gate, the models page, the admin and
# GET /api/training-runs/trigger/ say what kept them out.
KIDNEY_LOOP_REFUSALS_ALERT = int(env("KIDNEY_LOOP_REFUSALS_ALERT", "3"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("KIDNEY_LOG_LEVEL", "INFO")},
}
