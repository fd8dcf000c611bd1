# The one CourseCast image: every service is `coursecast <service>` from it.
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml setup.py README.md ./
COPY services ./services
COPY schemas ./schemas
RUN pip install --no-cache-dir . \
 && mkdir -p /var/lib/coursecast \
 && chown nobody /var/lib/coursecast
# The watchdog's local state (faust's datadir) must be writable by the service's user.
ENV COURSECAST_WATCHDOG_DATA_DIR=/var/lib/coursecast/watchdog
USER nobody
ENTRYPOINT ["coursecast"]
