# One image for web, workers and beat. GPU=1 adds TensorFlow's CUDA libraries for the workers.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    KIDNEY_DATA_DIR=/data \
    KERAS_HOME=/data/keras

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
ARG GPU=0
RUN if [ "$GPU" = "1" ]; then pip install --no-cache-dir "tensorflow[and-cuda]==2.21.0"; fi

COPY . .
RUN useradd --create-home --uid 1000 kidney && mkdir -p /data && chown kidney /data
USER kidney
EXPOSE 8000
CMD ["gunicorn", "kidneyproject.wsgi:application", "--bind=0.0.0.0:8000", "--workers=4", "--limit-request-line=0"]
