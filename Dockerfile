# The one CourseCast image: every service is `coursecast <service>` from it (docker-compose.yml).
# Stage 1 builds the wheels (the project's and its dependencies'); stage 2 installs them plainly,
# never editable, so the image holds the installed package and no source checkout.
FROM python:3.11.14-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY services ./services
COPY schemas ./schemas
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11.14-slim-bookworm
# ffmpeg/ffprobe from Debian 12, the same 5.1 series the test suite runs against.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg \
 && rm -rf /var/lib/apt/lists/*
# A user of its own, and its state folder: the watchdog's datadir lives below it, and a named volume
# mounted there starts with this ownership.
RUN groupadd --system --gid 10001 coursecast \
 && useradd --system --uid 10001 --gid coursecast --home-dir /var/lib/coursecast --shell /usr/sbin/nologin coursecast \
 && mkdir -p /var/lib/coursecast/watchdog \
 && chown -R coursecast:coursecast /var/lib/coursecast
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-cache-dir --no-index --find-links /tmp/wheels coursecast \
 && rm -rf /tmp/wheels
ENV COURSECAST_WATCHDOG_DATA_DIR=/var/lib/coursecast/watchdog \
    PYTHONUNBUFFERED=1
WORKDIR /var/lib/coursecast
USER coursecast:coursecast
ENTRYPOINT ["coursecast"]
